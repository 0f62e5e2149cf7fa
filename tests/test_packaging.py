"""Packaging: ``make dist`` installs offline into a fresh venv, and packaging/ is what the code says.

One ``dist`` and one venv per session (``scripts/dist.py``, then
``pip install --no-index --find-links dist -c dist/constraints.txt ...``,
no editable install); everything runs from that venv with a clean
environment, so nothing of the workspace leaks in. Distributions are found
the way ``make dist`` finds them (every ``plugins/*``), not listed here.
"""

from __future__ import annotations

from email.parser import Parser
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from typing import Any
import zipfile

import pytest
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import dist as dist_script  # noqa: E402

sys.path.remove(str(ROOT / "scripts"))

DISTS = dist_script.distributions()
APACHE = "Apache License\n                           Version 2.0, January 2004"
pytestmark = pytest.mark.slow


def dist_name(d: Path) -> str:
    return str(tomllib.loads((d / "pyproject.toml").read_text())["project"]["name"])


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """An environment with nothing of the workspace: the venv's bin first, no PYTHONPATH."""
    env = {
        "PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CONFIG_FILE": os.devnull,
    }
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def venv(dist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with every distribution installed from dist/, offline."""
    path = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    names = [dist_name(d) for d in DISTS]
    pip_install(path, dist_dir, *names)
    return path


def pip_install(venv: Path, dist_dir: Path, *what: str) -> None:
    proc = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--no-index",
            "--find-links",
            str(dist_dir),
            "-c",
            str(dist_dir / "constraints.txt"),
            *what,
        ],
        env=clean_env(venv),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def run(venv: Path, *argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = clean_env(venv, **kwargs.pop("env", {}))
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=kwargs.pop("timeout", 60),
        **kwargs,
    )


# -- metadata of every distribution -------------------------------------------------------
@pytest.mark.parametrize("d", DISTS, ids=lambda d: d.name)
def test_every_distribution_has_license_readme_urls_and_a_core_range(d: Path) -> None:
    """Before: no LICENSE anywhere, no README long description, no URLs, no version ranges."""
    project = tomllib.loads((d / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project.get("license-files") == ["LICENSE"]
    assert APACHE in (d / "LICENSE").read_text()
    assert project.get("readme") == "README.md" and (d / "README.md").read_text().startswith("# ")
    assert set(project.get("urls", {})) >= {"Homepage", "Source", "Documentation", "Changelog"}
    if project["name"] != "routerd-core":
        assert "routerd-core>=0.1,<0.2" in project["dependencies"], project["dependencies"]


def test_built_wheels_carry_it(dist_dir: Path) -> None:
    ours = {dist_name(d).replace("-", "_") for d in DISTS}
    wheels = sorted(w for w in dist_dir.glob("*.whl") if w.name.split("-")[0] in ours)
    assert len(wheels) == len(DISTS), [w.name for w in wheels]
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            meta = Parser().parsestr(
                zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
            )
        assert meta["Description-Content-Type"] == "text/markdown", wheel.name
        assert meta.get_payload().startswith("# "), wheel.name
        assert meta["License-Expression"] == "Apache-2.0"
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), wheel.name
        assert meta.get_all("Project-URL"), wheel.name
        requires = meta.get_all("Requires-Dist") or []
        if meta["Name"] != "routerd-core":
            assert "routerd-core<0.2,>=0.1" in requires, (wheel.name, requires)
        else:
            assert any('extra == "testing"' in r and r.startswith("pytest") for r in requires)
    sdists = [p for p in dist_dir.glob("*.tar.gz") if p.name.rsplit("-", 1)[0] in ours]
    assert len(sdists) == len(DISTS)


def test_constraints_pin_every_file_in_dist(dist_dir: Path) -> None:
    pins = dict(
        line.split("==")
        for line in (dist_dir / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    from packaging.utils import parse_wheel_filename

    for wheel in dist_dir.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        assert pins[str(name)] == str(version), wheel.name
    assert {"pydantic", "falcon", "waitress", "pluggy", "pytest", "setuptools"} <= set(pins)


# -- a fresh venv from the wheels -----------------------------------------------------------
def test_installed_from_wheels_not_editable(venv: Path) -> None:
    proc = run(
        venv,
        "python",
        "-c",
        "import json, routerd, routerctl; from importlib.metadata import distribution as d;"
        "print(json.dumps([routerd.__file__, routerctl.__file__,"
        " d('routerd-core').read_text('direct_url.json')]))",
    )
    assert proc.returncode == 0, proc.stderr
    core, ctl, direct = json.loads(proc.stdout)
    assert core.startswith(str(venv)) and ctl.startswith(str(venv))
    assert direct is None or '"editable": true' not in direct


def test_plugins_list_from_the_venv(venv: Path) -> None:
    proc = run(venv, "routerctl", "plugins", "list", "-o", "json")
    rows = json.loads(proc.stdout)
    assert proc.returncode == 0, (proc.stderr, [r for r in rows if r["error"]])
    assert {r["distribution"] for r in rows} == {
        dist_name(d) for d in DISTS if "plugins" in d.parts
    }
    hc = next(r for r in rows if r["name"] == "healthcheck")
    assert hc["daemonKinds"] == ["healthcheck"] and hc["version"] == "0.1.0"


@pytest.fixture
def hc_config(tmp_path: Path, tcp_listener: int) -> Path:
    spec = {
        "protocol": "tcp",
        "target": "127.0.0.1",
        "port": tcp_listener,
        "interval": "2s",
        "timeout": "1s",
    }
    return write_config(
        tmp_path / "router.yaml", router_config(resource("HealthCheck", "lo", spec))
    )


def test_a_daemon_from_the_wheels_then_a_plugin_uninstalled(
    venv: Path, dist_dir: Path, hc_config: Path, tmp_path: Path
) -> None:
    """Start a daemon from the installed wheels; an impostor wheel; uninstall: the kind is gone."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rdp-") as short:
        env = {"ROUTERD_RUNTIME_DIR": f"{short}/run", "ROUTERD_STATE_DIR": f"{short}/state"}
        daemon = subprocess.Popen(
            [
                *(str(venv / "bin" / "routerd"), "daemon", "healthcheck"),
                *("--config", str(hc_config), "--resource", "lo"),
            ],
            env=clean_env(venv, **env),
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "daemon.log").open("w"),
        )
        try:

            def healthy() -> bool:
                if daemon.poll() is not None:
                    pytest.fail("the daemon exited:\n" + (tmp_path / "daemon.log").read_text())
                proc = run(venv, "routerctl", "status", "healthcheck/lo", "-o", "json", env=env)
                return (
                    proc.returncode == 0
                    and json.loads(proc.stdout)["resources"][0]["phase"] == "Healthy"
                )

            poll(healthy, 30, "the healthcheck daemon from the wheels to be Healthy", 0.1)
            stop = run(venv, "routerctl", "stop", "healthcheck/lo", env=env)
            assert stop.returncode == 0, stop.stderr
            assert daemon.wait(10) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(5)

    # A third-party wheel that also claims HealthCheck: both fail, nobody serves it.
    impostor = build_impostor(tmp_path)
    proc = run(venv, "pip", "install", "--no-deps", "--no-index", str(impostor))
    assert proc.returncode == 0, proc.stderr
    listed = run(venv, "routerctl", "plugins", "list", "-o", "json")
    assert listed.returncode == 1
    errors = {r["name"]: r["error"] for r in json.loads(listed.stdout)}
    for name in ("healthcheck", "impostor"):
        assert (
            "evil-healthcheck 6.6.6" in errors[name]
            and "routerd-plugin-healthcheck" in errors[name]
        )
    refused = run(venv, "routerd", "validate", "-f", str(hc_config))
    assert refused.returncode == 1 and "is registered by" in refused.stderr
    assert run(venv, "pip", "uninstall", "-y", "evil-healthcheck").returncode == 0

    assert run(venv, "pip", "uninstall", "-y", "routerd-plugin-healthcheck").returncode == 0
    try:
        rows = json.loads(run(venv, "routerctl", "plugins", "list", "-o", "json").stdout)
        assert "healthcheck" not in {r["name"] for r in rows}
        assert not any("healthcheck" in r["daemonKinds"] for r in rows)
        gone = run(venv, "routerd", "validate", "-f", str(hc_config))
        assert gone.returncode == 1 and "unknown kind 'HealthCheck'" in gone.stderr
    finally:
        pip_install(venv, dist_dir, "routerd-plugin-healthcheck")  # the session venv again whole


def build_impostor(tmp_path: Path) -> Path:
    src = tmp_path / "impostor"
    (src / "evil_hc").mkdir(parents=True)
    (src / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=77"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "evil-healthcheck"
            version = "6.6.6"
            dependencies = ["routerd-core>=0.1,<0.2"]
            [project.entry-points.routerd]
            impostor = "evil_hc"
            """
        )
    )
    (src / "evil_hc" / "__init__.py").write_text(
        textwrap.dedent(
            """
            from routerd.plugin import DaemonEngine, DaemonKind, SpecModel, hookimpl

            class Spec(SpecModel):
                protocol: str = "tcp"

            @hookimpl
            def routerd_register_daemon_kinds(register):
                register(DaemonKind(name="healthcheck", kind="HealthCheck", spec_model=Spec,
                                    factory=lambda ctx: DaemonEngine()))
            """
        )
    )
    out = tmp_path / "impostor-dist"
    subprocess.run(
        [dist_script.uv(), "build", "--quiet", "--wheel", "--out-dir", str(out), str(src)],
        check=True,
        timeout=120,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


# -- packaging/ ------------------------------------------------------------------------------
def test_unit_template_is_the_code_and_renders_for_the_venv(venv: Path, tmp_path: Path) -> None:
    """Before: a unit with /usr/local/bin hard-coded and no generator."""
    from routerd.unit import TEMPLATE

    assert (ROOT / "packaging" / "routerd.service.in").read_text() == TEMPLATE
    proc = run(venv, "routerd", "unit", "--config", "/etc/routerd/router.yaml")
    assert proc.returncode == 0, proc.stderr
    unit = proc.stdout
    assert f"ExecStart={venv}/bin/routerd serve --config /etc/routerd/router.yaml" in unit
    assert "/usr/local/bin" not in unit and "@" not in unit.split("[Unit]")[1]
    for line in (
        "Type=notify",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "ProtectSystem=strict",
        "RuntimeDirectory=routerd",
        "StateDirectory=routerd",
    ):
        assert any(u.startswith(line) for u in unit.splitlines()), line
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (Debian: systemd)")
        pytest.skip("systemd-analyze is missing")
    path = tmp_path / "routerd.service"
    path.write_text(unit)
    check = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_clicks(venv: Path, shell: str) -> None:
    """packaging/routerctl.<shell> is exactly what click generates for routerctl."""
    proc = run(venv, "routerctl", env={"_ROUTERCTL_COMPLETE": f"{shell}_source"})
    assert proc.returncode == 0, proc.stderr
    assert (ROOT / "packaging" / f"routerctl.{shell}").read_text() == proc.stdout


def test_bash_completion_completes(venv: Path) -> None:
    proc = run(
        venv,
        "routerctl",
        env={
            "_ROUTERCTL_COMPLETE": "bash_complete",
            "COMP_WORDS": "routerctl pl",
            "COMP_CWORD": "1",
        },
    )
    assert proc.stdout.split() == ["plain,plugins"]


def test_the_starter_installs_and_its_tests_pass(
    venv: Path, dist_dir: Path, tmp_path: Path
) -> None:
    """``routerctl plugins new`` from the wheels; installed offline; its own tests (conformance) pass."""
    made = run(venv, "routerctl", "plugins", "new", "wan-probe", "--dir", str(tmp_path / "wp"))
    assert made.returncode == 0, made.stderr
    assert "pip install -e '.[test]' && pytest" in made.stderr
    pip_install(venv, dist_dir, "-e", f"{tmp_path / 'wp'}[test]")
    try:
        rows = json.loads(run(venv, "routerctl", "plugins", "list", "-o", "json").stdout)
        (row,) = [r for r in rows if r["name"] == "wan-probe"]
        assert (row["distribution"], row["daemonKinds"], row["error"]) == (
            "routerd-plugin-wan-probe",
            ["wan-probe"],
            None,
        )
        tests = run(venv, "python", "-m", "pytest", "-q", cwd=tmp_path / "wp", timeout=240)
        assert tests.returncode == 0, tests.stdout[-4000:]
        assert re.search(r"^(3[0-9]) passed", tests.stdout.splitlines()[-1]), tests.stdout[-500:]
    finally:
        assert run(venv, "pip", "uninstall", "-y", "routerd-plugin-wan-probe").returncode == 0
