"""What every ``irtmon`` command shares: the one Settings of this run, consoles, failing.

The CLI builds :class:`core.settings.Settings` once (:func:`get_settings`, from the ``IRTMON_*``
environment) and hands it down to everything it calls; nothing below the CLI reads the
environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

import typer
from rich.console import Console

from core.settings import Settings

console = Console()
err_console = Console(stderr=True)

TorchDevice = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="Where torch trains: cpu, cuda, cuda:N, or auto (a GPU where there is one) "
        "[default: IRTMON_TORCH_DEVICE, else cpu].",
        show_default=False,
    ),
]
"""The ``--device`` option of the ``irtmon train`` commands."""


def torch_device(option: str | None) -> str:
    """The device a ``train`` command uses (``--device``, else ``IRTMON_TORCH_DEVICE``), checked
    here so that an absent GPU fails before any data is read."""
    from models.runtime import device

    chosen = option or get_settings().torch_device
    try:
        resolved = device(chosen)
    except ValueError as err:
        raise fail(str(err)) from err
    if chosen != str(resolved):
        console.print(f"torch device: {resolved} ({chosen})")
    return str(resolved)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """This run's settings, read once from the environment."""
    return Settings()


def fail(message: str) -> typer.Exit:
    """Print an error in red and return the exit to raise (code 1)."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)
