"""``make dist``: everything needed to install routerd on a machine without the workspace.

Builds a wheel and an sdist of every distribution (routerd-core, routerctl
and each ``plugins/*`` found at build time, not a list kept by hand), adds
wheels of every third-party package they need (the versions this workspace
is tested with, for this machine's Python and platform), and writes
``constraints.txt`` pinning all of them, so that on the target::

    pip install --no-index --find-links dist -c dist/constraints.txt \\
        routerd-core routerctl routerd-plugin-healthcheck

installs offline exactly what was tested. ``routerd-core[testing]`` works
the same way (pytest and pytest-timeout are in ``dist`` too).

First-party names never go to a package index: the third-party requirement
set is read from the built wheels' metadata, so a ``routerd-core`` published
by someone else on an index cannot be picked up (dependency confusion).

Usage: ``python scripts/dist.py [--out DIR] [--skip-third-party]``.
"""

from __future__ import annotations

import argparse
from email.parser import Parser
from importlib import metadata
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.utils import parse_sdist_filename
from packaging.utils import parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
#: Extras of first-party distributions whose requirements go into dist too.
EXTRAS = {"routerd-core": ("testing",)}
#: What building a plugin from source needs (the starter's and first-party build
#: backend), so a plugin can be installed from its directory offline too.
BUILD_REQUIREMENTS = ("setuptools>=77",)


def distributions(root: Path = ROOT) -> list[Path]:
    """Every distribution directory of the workspace: core, routerctl, then plugins/*."""
    found = [root / "routerd-core", root / "routerctl"]
    found += sorted(p.parent for p in (root / "plugins").glob("*/pyproject.toml"))
    return found


def uv() -> str:
    for candidate in (ROOT / ".tools" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SystemExit("dist: uv not found (run scripts/setup.sh)")


def build(dirs: list[Path], out: Path) -> None:
    for d in dirs:
        # An sdist, then the wheel built from that sdist: a file missing from
        # the sdist (README, LICENSE, py.typed) fails here, not on a user's machine.
        subprocess.run(
            [uv(), "build", "--quiet", "--out-dir", str(out), str(d)],
            check=True,
        )


def _wheel_metadata(path: Path) -> tuple[str, list[str], list[str]]:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(zf.read(name).decode())
    return msg["Name"], msg.get_all("Requires-Dist") or [], msg.get_all("Provides-Extra") or []


def third_party_requirements(wheels: list[Path]) -> list[str]:
    """What the first-party wheels require from elsewhere, markers evaluated here."""
    first_party = {canonicalize_name(_wheel_metadata(w)[0]) for w in wheels}
    wanted: dict[str, Requirement] = {}
    for wheel in wheels:
        name, requires, _ = _wheel_metadata(wheel)
        extras = EXTRAS.get(canonicalize_name(name), ())
        for line in requires:
            req = Requirement(line)
            if canonicalize_name(req.name) in first_party:
                continue
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": extra}) for extra in ("", *extras)
            ):
                continue
            key = canonicalize_name(req.name)
            if key in wanted:
                wanted[key].specifier &= req.specifier
            else:
                req.marker = None
                wanted[key] = req
    return sorted(str(r) for r in wanted.values())


def tested_versions() -> dict[str, str]:
    """The third-party versions installed in this workspace's venv (what the tests ran with)."""
    pins: dict[str, str] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name and not name.startswith("routerd") and name != "routerctl":
            pins[name] = dist.version
    return pins


def pip() -> list[str]:
    """pip for this interpreter: the workspace venv has none, so pip of .tools targets it."""
    tools = ROOT / ".tools" / "bin" / "pip"
    if tools.exists():
        return [str(tools), "--python", sys.executable]
    return [sys.executable, "-m", "pip"]


def fetch_third_party(requirements: list[str], out: Path) -> None:
    """Wheels of every requirement and what it needs, at the tested versions."""
    if not requirements:
        return
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "tested.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(tested_versions().items())))
        # pip wheel: a package published only as an sdist is built into a
        # wheel here, so the target needs no compiler and no build backend.
        subprocess.run(
            [
                *pip(),
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--wheel-dir",
                str(out),
                "-c",
                str(constraints),
                *requirements,
            ],
            check=True,
        )


def write_constraints(out: Path) -> Path:
    """``constraints.txt``: ``name==version`` of every distribution in ``out``."""
    pins: dict[str, str] = {}
    for path in out.iterdir():
        if path.suffix == ".whl":
            name, version, _, _ = parse_wheel_filename(path.name)
        elif path.name.endswith(".tar.gz"):
            name, version = parse_sdist_filename(path.name)
        else:
            continue
        pins[str(name)] = str(version)
    target = out / "constraints.txt"
    header = (
        "# routerd: every distribution in this directory, pinned (written by make dist).\n"
        "# pip install --no-index --find-links DIR -c DIR/constraints.txt routerd-core routerctl ...\n"
    )
    target.write_text(header + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory")
    parser.add_argument(
        "--skip-third-party",
        action="store_true",
        help="only the first-party wheels and sdists (dependencies then come from an index)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    dirs = distributions()
    build(dirs, out)
    wheels = sorted(out.glob("*.whl"))
    if not args.skip_third_party:
        fetch_third_party([*third_party_requirements(wheels), *BUILD_REQUIREMENTS], out)
    constraints = write_constraints(out)
    names = [d.name if d.parent == ROOT else f"plugins/{d.name}" for d in dirs]
    count = len(re.findall(r"==", constraints.read_text()))
    print(f"dist: {len(dirs)} distributions ({', '.join(names)}), {count} pinned in {constraints}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
