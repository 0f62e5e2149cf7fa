"""Hostile config input through the real ``routerd`` command.

Every case runs ``routerd validate`` (and a few ``routerd serve`` / ``routerd
daemon``) as a subprocess under a deadline and an address-space limit, so a
hang or a memory bomb fails the case instead of the machine. The contract:
exit 1, one ``error:`` line per problem naming where it is, a count line, no
traceback, nothing left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from routerd.config import MAX_CONFIG_BYTES
from routerd.config import MAX_RESOURCES
from routerd.config import parse_yaml
from routerd.errors import ConfigError

#: Generous on a loaded 2-core machine; a well-behaved run takes ~0.5 s.
DEADLINE = 30.0
#: Address space of each child: a memory bomb dies here instead of swapping the machine.
ADDRESS_SPACE = 1 << 30
#: Longest line a problem may print (a 100 kB kind name must not become a 100 kB line).
MAX_LINE = 512
#: Each case loads only the plugin it needs: a third of each run is importing plugins.
PLUGINS = "healthcheck"

HEAD = "apiVersion: routerd.net/v1alpha1\nkind: Router\nmetadata: {name: t}\nspec:\n  resources:\n"
HC_OK = "protocol: tcp, target: 127.0.0.1, port: 80"


def res(kind: str, name: str, spec: str) -> str:
    return (
        f"    - apiVersion: net.routerd.net/v1alpha1\n      kind: {kind}\n"
        f"      metadata: {{name: {name}}}\n      spec: {spec}\n"
    )


def hc(spec: str = HC_OK, name: str = "a") -> str:
    return HEAD + res("HealthCheck", name, "{" + spec + "}")


def v4(spec: str) -> str:
    return HEAD + res("DHCPv4Client", "wan", "{interface: wan0, " + spec + "}")


def v6(spec: str) -> str:
    return HEAD + res("DHCPv6PrefixDelegation", "pd", "{interface: wan0, " + spec + "}")


def with_resources(value: str) -> str:
    return HEAD.replace("  resources:\n", f"  resources: {value}\n")


def bomb(levels: int = 9) -> str:
    """Billion laughs: 9 ** levels integers after alias expansion, a few hundred bytes on disk."""
    items = ["&x0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    items += [f"&x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return v4("parameterRequestList: [" + ", ".join(items) + "]")


def merge_bomb(levels: int = 9) -> str:
    """Merge keys expand at construction: each level merges the previous one 9 times."""
    items = ["&m0 {a: 1}"]
    items += [f"&m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 9) + "]}" for i in range(1, levels)]
    return HEAD.replace(
        "  resources:\n", "  anchors: [" + ", ".join(items) + "]\n  resources: []\n"
    )


Maker = Callable[[Path], Path]


def text(content: str | bytes) -> Maker:
    def make(d: Path) -> Path:
        path = d / "r.yaml"
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    return make


def fifo(d: Path) -> Path:
    path = d / "r.yaml"
    os.mkfifo(path)
    return path


def symlink_loop(d: Path) -> Path:
    (d / "r.yaml").symlink_to(d / "loop.yaml")
    (d / "loop.yaml").symlink_to(d / "r.yaml")
    return d / "r.yaml"


def directory(d: Path) -> Path:
    (d / "r.yaml").mkdir()
    return d / "r.yaml"


def symlink_to_good(d: Path) -> Path:
    real = d / "real.yaml"
    real.write_text(hc())
    (d / "r.yaml").symlink_to(real)
    return d / "r.yaml"


def existing(path: str) -> Maker:
    return lambda d: Path(path)


def many(count: int) -> str:
    return HEAD + "".join(res("HealthCheck", f"c{i}", "{" + HC_OK + "}") for i in range(count))


@dataclass(frozen=True)
class Case:
    id: str
    make: Maker
    needle: str  # must appear in the error output: which resource/field, or what was wrong
    plugins: str = PLUGINS


CASES = [
    # -- the reader: only regular files, bounded, UTF-8 -------------------------
    Case("fifo", fifo, "not a regular file (a FIFO)"),
    Case("dev-zero", existing("/dev/zero"), "not a regular file (a character device)"),
    Case("dev-null", existing("/dev/null"), "not a regular file (a character device)"),
    Case("directory", directory, "not a regular file (a directory)"),
    Case("symlink-loop", symlink_loop, "Too many levels of symbolic links"),
    Case("missing", lambda d: d / "nope.yaml", "No such file or directory"),
    Case("huge", text(hc() + "#" * (2 << 20) + "\n"), "larger than 1 MiB"),
    Case("binary-garbage", text(bytes(range(256)) * 64), "not UTF-8"),
    Case("utf16", text(hc().encode("utf-16")), "not UTF-8"),
    Case("bom-then-garbage", text(b"\xef\xbb\xbfkind: [\n"), "YAML syntax error"),
    Case("nul-byte", text(hc().replace("tcp", "t\0cp")), "YAML"),
    # -- YAML structure ---------------------------------------------------------
    Case("mixed-type-keys", text(hc() + "1: one\nzz: two\n"), "mapping keys must be strings, not int"),
    Case("null-key", text(hc() + "~: x\nzz: y\n"), "mapping keys must be strings, not null"),
    Case("null-key-in-spec", text(hc(HC_OK + ", ~: x")), "mapping keys must be strings, not null"),
    Case("bool-key", text(hc("on: 1, " + HC_OK)), "mapping keys must be strings, not bool"),
    Case(
        "int-key-router-spec",
        text(HEAD.replace("  resources:\n", "  2: x\n  zz: y\n  resources: []\n")),
        "mapping keys must be strings, not int",
    ),
    Case("unhashable-key", text(hc("? [a, b] : 1, " + HC_OK)), "mapping keys must be strings"),
    Case("merge-int-key", text(hc("<<: {1: a}, " + HC_OK)), "mapping keys must be strings"),
    Case("duplicate-yaml-key", text(hc(HC_OK + ", port: 443")), "duplicate key 'port'"),
    Case("deep-flow-list", text(with_resources("[" * 20000 + "]" * 20000)), "nested deeper than"),
    Case("deep-flow-map", text("{a: " * 5000 + "1" + "}" * 5000), "nested deeper than"),
    Case(
        "deep-block",
        text(hc() + "".join(" " * i + f"k{i}:\n" for i in range(60))),
        "nested deeper than",
    ),
    Case("alias-bomb", text(bomb()), "more than 100000 YAML values"),
    Case("merge-bomb", text(merge_bomb()), "more than 100000 YAML values"),
    Case("recursive-alias", text(with_resources("&r [*r]")), "itself"),
    Case("two-documents", text(hc() + "---\n" + hc()), "single document"),
    Case("python-tag", text(hc(HC_OK + ', path: !!python/object/apply:os.system ["true"]')), "YAML"),
    Case("unknown-tag", text(hc(HC_OK + ", path: !nope x")), "YAML"),
    Case("int-5000-digits", text(hc(f"protocol: tcp, target: 127.0.0.1, port: 1{'0' * 5000}")), "line 9"),
    Case("impossible-date", text(hc("protocol: tcp, target: 2001-02-30, port: 80")), "line 9"),
    Case("tab-indent", text(hc().replace("      spec:", "\tspec:")), "YAML syntax error"),
    # -- the Router document ------------------------------------------------------
    Case("empty-file", text(""), "the config must be a Router mapping"),
    Case("top-level-scalar", text("hello\n"), "the config must be a Router mapping"),
    Case("top-level-list", text("- 1\n- 2\n"), "the config must be a Router mapping"),
    Case("resources-mapping", text(with_resources("{a: 1}")), "must be a list"),
    Case("resource-scalar", text(HEAD + "    - 42\n"), "spec.resources[0]: must be a mapping"),
    Case("router-name-list", text(hc().replace("metadata: {name: t}", "metadata: {name: [t]}")), "Router: metadata.name"),
    Case("spec-list", text(HEAD + res("HealthCheck", "a", "[1, 2]")), "HealthCheck/a: spec: must be a mapping"),
    Case("duplicate-names", text(hc() + res("HealthCheck", "a", "{" + HC_OK + "}")), "duplicate resource name"),
    Case("too-many-resources", text(many(300)), "300 resources; at most 256"),
    Case("control-chars-in-kind", text(hc().replace("kind: HealthCheck", 'kind: "Health\\nCheck\\e[31m"')), "unknown kind"),
    Case("long-kind", text(hc().replace("kind: HealthCheck", "kind: " + "K" * 100_000)), "unknown kind"),
    # -- strict types and bounds in the spec models ------------------------------
    Case("threshold-true", text(hc(HC_OK + ", healthyThreshold: true")), "HealthCheck/a: spec.healthyThreshold"),
    Case("threshold-float", text(hc(HC_OK + ", unhealthyThreshold: 2.0")), "HealthCheck/a: spec.unhealthyThreshold"),
    Case("port-string", text(hc('protocol: tcp, target: 127.0.0.1, port: "80"')), "HealthCheck/a: spec.port"),
    Case("binary-target", text(hc("protocol: tcp, target: !!binary aGVsbG8=, port: 80")), "HealthCheck/a: spec.target"),
    Case("interval-100000000d", text(hc(HC_OK + ", interval: 100000000d")), "HealthCheck/a: spec.interval"),
    Case("interval-400-digits", text(hc(HC_OK + f", interval: 1{'0' * 400}")), "HealthCheck/a: spec.interval"),
    Case("interval-2d", text(hc(HC_OK + ", interval: 2d")), "HealthCheck/a: spec.interval"),
    Case("timeout-10m", text(hc(HC_OK + ", interval: 1h, timeout: 10m")), "HealthCheck/a: spec.timeout"),
    Case("long-path", text(hc("protocol: http, target: 127.0.0.1, path: /" + "a" * 5000)), "HealthCheck/a: spec.path"),
    Case("v4-metric-true", text(v4("routeMetric: true")), "DHCPv4Client/wan: spec.routeMetric", "dhcpv4"),
    Case("v4-bool-string", text(v4('applyAddress: "yes"')), "DHCPv4Client/wan: spec.applyAddress", "dhcpv4"),
    Case("v4-prl-bool", text(v4("parameterRequestList: [true, 3]")), "DHCPv4Client/wan: spec.parameterRequestList[0]", "dhcpv4"),
    Case("v4-delay-huge", text(v4("initialDelay: 100000000d")), "DHCPv4Client/wan: spec.initialDelay", "dhcpv4"),
    Case("v6-subnet-false", text(v6("downstream: [{interface: lan0, subnetId: false}]")), "DHCPv6PrefixDelegation/pd: spec.downstream[0].subnetId", "dhcpv6"),
    Case(
        "v6-downstreams-300",
        text(v6("downstream: [" + ", ".join(f"{{interface: lan0, subnetId: {i}}}" for i in range(300)) + "]")),
        "DHCPv6PrefixDelegation/pd: spec.downstream",
        "dhcpv6",
    ),
]  # fmt: skip

#: Configs that must still be accepted: a BOM, a symlink, anchors and merge keys
#: used sensibly, and the largest resource count allowed.
ACCEPTED = [
    Case("bom", text(b"\xef\xbb\xbf" + hc().encode()), "ok (1 resources)"),
    Case("symlink", symlink_to_good, "ok (1 resources)"),
    Case(
        "anchors-and-merge",
        text(hc().replace("{" + HC_OK + "}", "&base {" + HC_OK + "}") + res("HealthCheck", "b", "{<<: *base, port: 443}")),
        "ok (2 resources)",
    ),
    Case("256-resources", text(many(256)), "ok (256 resources)"),
]  # fmt: skip


@dataclass(frozen=True)
class Run:
    returncode: int | None  # None: killed at the deadline
    stdout: str
    stderr: str
    seconds: float


def child_env(plugins: str) -> dict[str, str]:
    env = {"ROUTERD_PLUGINS": plugins, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if "PYTHONPATH" in os.environ:  # lets the same table run against another checkout
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def run_routerd(args: list[str], limit_memory: bool = True, plugins: str = PLUGINS) -> Run:
    """``routerd ARGS`` killed at DEADLINE; ``limit_memory`` caps its address space
    (not for serve and daemon: their thread stacks alone would hit the cap)."""
    prlimit = shutil.which("prlimit") if limit_memory else None
    prefix = [prlimit, f"--as={ADDRESS_SPACE}", "--"] if prlimit else []
    start = time.monotonic()
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "routerd", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(plugins),
    )
    try:
        out, err = proc.communicate(timeout=DEADLINE)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = None
    seconds = time.monotonic() - start
    return Run(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), seconds)


def assert_one_line_problems(run: Run, path: str) -> list[str]:
    """Exit 1, every stderr line an ``error:`` line or the count line; returns the errors."""
    assert run.returncode is not None, f"did not finish within {DEADLINE}s"
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.returncode == 1, run.stderr[-2000:]
    assert "\x1b" not in run.stderr, "terminal escapes must not reach the terminal"
    lines = run.stderr.splitlines()
    assert lines, "no output"
    for line in lines:
        assert len(line) <= MAX_LINE, f"{len(line)}-character line: {line[:200]}..."
    *errors, summary = lines
    assert summary == f"{path}: {len(errors)} problem(s)", run.stderr[-2000:]
    assert errors and all(e.startswith("error: ") for e in errors), run.stderr[-2000:]
    return errors


@pytest.fixture(scope="module")
def validate_runs() -> Iterator[dict[str, tuple[str, Run]]]:
    """Every case through ``routerd validate``, four at a time (each takes ~0.5 s alone)."""
    with tempfile.TemporaryDirectory(prefix="rdhostile-") as base:

        def one(case: Case) -> tuple[str, Run]:
            d = Path(base) / case.id
            d.mkdir()
            path = str(case.make(d))
            return path, run_routerd(["validate", "-f", path], plugins=case.plugins)

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = dict(
                zip([c.id for c in CASES + ACCEPTED], pool.map(one, CASES + ACCEPTED), strict=True)
            )
        yield results


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_validate_refuses_hostile_config(
    case: Case, validate_runs: dict[str, tuple[str, Run]]
) -> None:
    path, run = validate_runs[case.id]
    errors = assert_one_line_problems(run, path)
    assert any(case.needle in e for e in errors), "\n".join(errors)[-2000:]


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.id for c in ACCEPTED])
def test_validate_accepts_unusual_but_valid_config(
    case: Case, validate_runs: dict[str, tuple[str, Run]]
) -> None:
    path, run = validate_runs[case.id]
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == f"{path}: {case.needle}"


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        (
            "densest-1MiB",
            "[" + "1," * (MAX_CONFIG_BYTES // 2 - 2) + "1]",
            "more than 100000 YAML values",
        ),
        ("alias-bomb", bomb(), "more than 100000 YAML values"),
        ("merge-bomb", merge_bomb(), "more than 100000 YAML values"),
        ("deep", "[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),
        ("largest-valid", many(MAX_RESOURCES), ""),
    ],
)
def test_loading_is_bounded_work(name: str, content: str, needle: str) -> None:
    """The worst a file within the size limit can ask costs well under a second of CPU."""
    started = time.process_time()
    try:
        parse_yaml(content)
        problem = ""
    except ConfigError as exc:
        (only,) = exc.problems
        problem = str(only)
    cpu = time.process_time() - started
    assert needle in problem and bool(needle) == bool(problem)
    assert cpu < 2.0, f"{name}: {cpu:.2f} s of CPU"


REFUSED = {
    "fifo": fifo,
    "symlink-loop": symlink_loop,
    "mixed-type-keys": text(hc() + "1: one\nzz: two\n"),
    "threshold-true": text(hc(HC_OK + ", healthyThreshold: true")),
}


@pytest.mark.parametrize("command", ["serve", "daemon"])
@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_start_leaves_nothing_behind(name: str, command: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rdref-") as base:
        d = Path(base)
        config = REFUSED[name](d)
        run_dir, state_dir = d / "run", d / "state"
        args = [command, "--config", str(config)]
        if command == "daemon":
            args = ["daemon", "healthcheck", "--config", str(config), "--resource", "a"]
        paths = ["--runtime-dir", str(run_dir), "--state-dir", str(state_dir)]
        run = run_routerd([*args, *paths], limit_memory=False)
        assert run.returncode is not None, f"did not finish within {DEADLINE}s"
        assert "Traceback" not in run.stderr, run.stderr[-2000:]
        assert run.returncode == 1, run.stderr[-2000:]
        lines = run.stderr.splitlines()
        assert lines[-1].startswith(f"Error: {config}: ") and lines[-1].endswith("not starting")
        assert lines[:-1] and all(re.match(r"^error: \S", line) for line in lines[:-1]), lines
        # No socket, no directory: a refused start creates nothing in the runtime dir.
        assert not run_dir.exists(), sorted(str(p) for p in run_dir.rglob("*"))
