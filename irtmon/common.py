"""What every ``irtmon`` command shares: the one Settings of this run, consoles, failing.

The CLI builds :class:`core.settings.Settings` once (:func:`get_settings`, from the ``IRTMON_*``
environment) and hands it down to everything it calls; nothing below the CLI reads the
environment.
"""

from __future__ import annotations

from functools import lru_cache

import typer
from rich.console import Console

from core.settings import Settings

console = Console()
err_console = Console(stderr=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """This run's settings, read once from the environment."""
    return Settings()


def fail(message: str) -> typer.Exit:
    """Print an error in red and return the exit to raise (code 1)."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)
