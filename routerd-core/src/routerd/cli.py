"""The ``routerd`` command: entry point, and what ``routerd daemon`` runs.

``routerd daemon`` is the command whose start matters (the exec path, and
every daemon a standalone router runs), so :func:`main` parses an ordinary
``routerd daemon KIND --config ... --resource ...`` itself and runs it
without importing click (20 ms of a cold start). Anything else, including a
daemon command line it does not recognise exactly (``--help``, a typo, a
missing option), goes to the click group in :mod:`routerd.commands`, which
parses it the same way and gives click's messages.
"""

from __future__ import annotations

from collections.abc import Mapping
import gc
import logging
import os
from pathlib import Path
import sys
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from routerd.errors import ConfigError
    from routerd.plugins import PluginSet

#: ``routerd daemon`` options taking a value, to their parameter names.
_DAEMON_OPTIONS = {
    "--config": "config_path",
    "--resource": "resource",
    "--runtime-dir": "runtime_dir",
    "--state-dir": "state_dir",
    "--socket": "socket_path",
    "--log-level": "log_level",
}
LOG_LEVELS = ("debug", "info", "warning", "error")


class DaemonRefused(Exception):
    """The daemon does not start (one line; ``routerd daemon`` prints it as ``Error: ...``, exit 1)."""


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def absolute_config(config_path: str) -> Path:
    """The config path made absolute for the daemons, symlinks kept.

    Not ``resolve()``: a symlink loop raised RuntimeError there, before the
    config reader could refuse it in one line; and a reload re-reads the
    link, so retargeting it (a deploy) takes effect.
    """
    return Path(os.path.abspath(config_path))


def print_problems(exc: ConfigError) -> None:
    """Every config problem on stderr, one line each (they are one line already)."""
    for problem in exc.problems:
        print(f"error: {problem}", file=sys.stderr, flush=True)


def parse_daemon_args(args: list[str]) -> dict[str, str] | None:
    """``routerd daemon``'s arguments (after ``daemon``), or None for click to parse.

    Only the plain forms are taken (``--opt value``, ``--opt=value``, one
    daemon kind); anything unusual is click's, so its help and errors stay.
    """
    out: dict[str, str] = {}
    kind: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name, eq, value = arg.partition("=")
            param = _DAEMON_OPTIONS.get(name)
            if param is None:
                return None
            if not eq:
                i += 1
                if i == len(args):
                    return None
                value = args[i]
            if not value or value.startswith("-"):
                return None  # click decides what a value that looks like an option means
            out[param] = value
        elif kind is None:
            kind = arg
        else:
            return None
        i += 1
    if kind is None or "config_path" not in out or "resource" not in out:
        return None
    if out.setdefault("log_level", "info") not in LOG_LEVELS:
        return None
    out["daemon_kind"] = kind
    return out


def main() -> None:
    """The console script ``routerd`` (and ``python -m routerd``)."""
    argv = sys.argv[1:]
    if argv[:1] == ["daemon"] and (args := parse_daemon_args(argv[1:])) is not None:
        # The start creates some 50,000 objects that nearly all live on; the
        # 120-odd collections they would trigger are 7% of a cold start.
        # DaemonRuntime.ready turns the collector back on.
        gc.disable()
        from routerd.permissions import set_umask

        set_umask()  # before any file exists: state and logs are not world-readable (§9)
        setup_logging(args["log_level"])
        try:
            code = run_daemon(
                args["daemon_kind"],
                args["config_path"],
                args["resource"],
                args.get("runtime_dir"),
                args.get("state_dir"),
                args.get("socket_path"),
            )
        except DaemonRefused as exc:
            print(f"Error: {exc}", file=sys.stderr, flush=True)  # as click shows its errors
            code = 1
        sys.exit(code)
    from routerd.commands import main as commands

    commands()


def run_daemon(
    daemon_kind: str,
    config_path: str,
    resource: str,
    runtime_dir: str | None = None,
    state_dir: str | None = None,
    socket_path: str | None = None,
    *,
    plugins: PluginSet | None = None,
    item: Mapping[str, Any] | None = None,
) -> int:
    """What ``routerd daemon`` runs, and a child of the fork server (``routerd serve``).

    ``plugins``: what the fork server loaded; by default this kind's plugin
    and the observers are loaded here (:func:`routerd.plugins.load_daemon_plugins`).
    ``item``: the resource's ``apiVersion`` and raw ``spec`` as serve read
    them from the config (validated here again); by default the config is read.
    Returns the exit code; a refusal to start is a
    :class:`DaemonRefused` (one line, no traceback), with every config
    problem printed before it.
    """
    from routerd.client import default_runtime_dir
    from routerd.client import default_state_dir
    from routerd.config import load_resource
    from routerd.config import resource_from_item
    from routerd.daemon.listen import SocketInUse
    from routerd.daemon.persistence import StorageUnusable
    from routerd.daemon.runtime import DaemonPaths
    from routerd.daemon.runtime import DaemonRuntime
    from routerd.errors import ConfigError
    from routerd.plugins import load_daemon_plugins
    from routerd.secrets import install_log_redaction

    state_root = Path(state_dir or default_state_dir())
    if plugins is None:
        plugins = load_daemon_plugins(daemon_kind, state_root)
    kind = plugins.kinds.get(daemon_kind)
    if kind is None:
        clash = plugins.conflict(daemon_kind)
        if clash is not None:
            raise DaemonRefused(clash)
        known = ", ".join(sorted(plugins.kinds)) or "none"
        raise DaemonRefused(f"unknown daemon kind {daemon_kind!r} (loaded: {known})")
    try:
        # Only this daemon's resource: the rest of the file is serve's (docs/configuration.md).
        if item is not None:
            api_version = str(item.get("apiVersion"))
            res = resource_from_item(
                config_path, plugins, resource, kind, api_version, item.get("spec")
            )
        else:
            res = load_resource(config_path, plugins, resource, kind)
    except ConfigError as exc:
        print_problems(exc)
        raise DaemonRefused(
            f"{config_path}: {len(exc.problems)} problem(s); not starting"
        ) from None
    paths = DaemonPaths.default(
        daemon_kind, resource, Path(runtime_dir or default_runtime_dir()), state_root
    )
    if socket_path:
        paths.socket = Path(socket_path)
    runtime = DaemonRuntime(plugins, kind, absolute_config(config_path), res, paths)
    install_log_redaction(runtime.scrubber)
    try:
        return runtime.serve()
    except SocketInUse as exc:
        raise DaemonRefused(str(exc)) from None
    except StorageUnusable as exc:  # a broken setup: one line, not a traceback
        raise DaemonRefused(str(exc)) from None
    except OSError as exc:
        raise DaemonRefused(f"cannot listen on {paths.socket}: {exc.strerror or exc}") from None


if __name__ == "__main__":  # pragma: no cover
    main()
