"""routerctl's error: one line on stderr, ``routerctl: <message>``, exit status 1."""

from __future__ import annotations

import re
from typing import IO
from typing import Any

import click

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class CtlError(click.ClickException):
    """A failure to report in one line (no traceback): a missing socket, an HTTP error."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # One line, and no terminal control codes from a peer's error text.
        text = _CONTROL.sub("?", " ".join(str(message).split()))
        super().__init__(text or "failed")

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"routerctl: {self.format_message()}", err=True, file=file)


def warn(message: str) -> None:
    """A warning line on stderr that does not end the command."""
    click.echo(f"routerctl: warning: {message}", err=True)
