"""docs/writing-a-plugin.md, executed: every code block, in order, in a fresh directory.

Block kinds (the info string after the backticks):

- ``<lang> file=PATH``: written to PATH, relative to the shell's directory;
- ``sh``: run with bash (``set -e``); exports and ``cd`` carry over to the
  next block, as in one terminal; it must exit 0;
- ``sh background``: started and left running (``routerd serve``), ended by
  PID at the end;
- ``text output``: the output of the previous ``sh`` block, each line a
  pattern (``*`` is anything; runs of spaces are one) that some output line
  must match.

Any other code block fails the test: every block of the tutorial is run.
Installs come from one ``make dist`` (tests/test_packaging.py), offline.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import re
import shlex
import shutil
import signal
import subprocess
import sys

import pytest

from routerctl import starter

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "writing-a-plugin.md"
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\n", re.M | re.S)
pytestmark = pytest.mark.slow


@dataclass
class Block:
    info: str
    body: str


def blocks() -> list[Block]:
    return [Block(m.group(1).strip(), m.group(2)) for m in _FENCE.finditer(DOC.read_text())]


def test_the_files_are_the_starters() -> None:
    """The tutorial's files are what ``routerctl plugins new ticker`` writes, byte for byte."""
    shown = {b.info.split("file=")[1]: b.body for b in blocks() if "file=" in b.info}
    generated = starter.files("ticker")
    for path, text in generated.items():
        if path.endswith((".py", ".toml")):
            assert shown.get(path) == text, f"{path} differs from the starter"


def matches(pattern: str, output: str) -> bool:
    parts = pattern.split()
    regex = ""
    for i, token in enumerate(parts):
        if i:
            regex += r"\s*" if "*" in (token, parts[i - 1]) else r"\s+"
        regex += ".*?" if token == "*" else re.escape(token).replace(r"\*", r"\S*")
    return any(re.fullmatch(regex, " ".join(line.split())) for line in output.splitlines())


def test_every_block_runs(dist_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / ".state"
    state.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (state / "cwd").write_text(str(work))
    python_dir = Path(os.path.realpath(sys.executable)).parent
    (state / "env").write_text(
        "".join(
            f"export {k}={shlex.quote(v)}\n"
            for k, v in {
                "PATH": f"{python_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": os.environ.get("HOME", "/root"),
                "LANG": "C.UTF-8",
                # The tutorial's plain `pip install ...` from make dist's directory, offline.
                "PIP_NO_INDEX": "1",
                "PIP_FIND_LINKS": str(dist_dir),
                "PIP_CONSTRAINT": str(dist_dir / "constraints.txt"),
                "PIP_CONFIG_FILE": os.devnull,
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            }.items()
        )
    )
    prelude = f'cd "$(cat {state}/cwd)"; source {state}/env\n'
    epilogue = f"\npwd > {state}/cwd; export -p > {state}/env\n"
    background: list[subprocess.Popen[bytes]] = []
    output = ""
    try:
        for block in blocks():
            kind, _, rest = block.info.partition(" ")
            if rest.startswith("file="):
                path = Path((state / "cwd").read_text().strip()) / rest[len("file=") :]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(block.body)
            elif kind == "sh" and rest == "":
                proc = subprocess.run(
                    ["bash", "-e", "-c", prelude + block.body + epilogue],
                    env={},
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert proc.returncode == 0, (
                    f"{block.body}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
                )
                output = proc.stdout
            elif kind == "sh" and rest == "background":
                log = (tmp_path / f"background-{len(background)}.log").open("wb")
                background.append(
                    subprocess.Popen(
                        ["bash", "-c", prelude + "exec " + block.body.strip()],
                        env={},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            elif kind == "text" and rest == "output":
                for line in block.body.splitlines():
                    if line.strip():
                        assert matches(line, output), f"{line!r} not in:\n{output}"
            else:
                pytest.fail(f"a code block the test cannot run: ```{block.info}")
    finally:
        for proc in background:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                    pytest.fail("routerd serve did not stop within 20 s of SIGTERM")
        for line in (state / "env").read_text().splitlines():
            m = re.search(r"ROUTERD_(?:RUNTIME|STATE)_DIR=\"?([^\"]+)\"?", line)
            if m and m.group(1).startswith("/tmp/ticker-"):
                shutil.rmtree(m.group(1), ignore_errors=True)
    assert background and all(p.returncode == 0 for p in background), [
        p.returncode for p in background
    ]
