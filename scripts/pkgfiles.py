"""Regenerate ``packaging/``: the systemd unit template and routerctl's shell completion.

``make packaging`` runs it; tests/test_packaging.py fails when a file here
differs from what the code generates (the unit from :mod:`routerd.unit`,
the completions from click's own ``_ROUTERCTL_COMPLETE=<shell>_source``).

``install-unit`` writes the unit for the workspace's virtualenv (or
``--bindir``) to ``/etc/systemd/system/routerd.service``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import shutil
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
SHELLS = {"bash": "routerctl.bash", "zsh": "routerctl.zsh", "fish": "routerctl.fish"}


def completion(shell: str, routerctl: str | None = None) -> str:
    """click's completion script for ``routerctl`` in ``shell``, from the real command."""
    exe = routerctl or shutil.which("routerctl") or str(Path(sys.executable).parent / "routerctl")
    env = {**os.environ, "_ROUTERCTL_COMPLETE": f"{shell}_source"}
    out = subprocess.run([exe], env=env, capture_output=True, text=True, check=True)
    return out.stdout


def unit_template() -> str:
    from routerd.unit import TEMPLATE

    return TEMPLATE


def expected() -> dict[Path, str]:
    files = {PACKAGING / "routerd.service.in": unit_template()}
    for shell, name in SHELLS.items():
        files[PACKAGING / name] = completion(shell)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("generate", help="rewrite packaging/ from the code")
    install = sub.add_parser("install-unit", help="install the unit for this installation")
    install.add_argument("--bindir", default=str(Path(sys.executable).parent))
    install.add_argument("--config", default="/etc/routerd/router.yaml")
    install.add_argument("--dest", default="/etc/systemd/system/routerd.service")
    args = parser.parse_args(argv)
    if args.cmd == "generate":
        for path, text in expected().items():
            path.write_text(text)
            print(f"packaging: wrote {path.relative_to(ROOT)}")
        return 0
    from routerd.unit import render

    Path(args.dest).write_text(render(args.bindir, args.config))
    print(f"packaging: wrote {args.dest} (routerd in {args.bindir}, config {args.config})")
    print("now: systemctl daemon-reload && systemctl enable --now routerd")
    return 0


if __name__ == "__main__":
    sys.exit(main())
