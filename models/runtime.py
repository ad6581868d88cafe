"""Torch run-time settings shared by the model modules (torch is imported lazily: it is heavy).

- :func:`set_threads`: how many CPU threads torch uses.
- :func:`device`: where torch trains and runs the models (``IRTMON_TORCH_DEVICE``, ``--device``):
  ``cpu`` (the default, and what the tests run), ``cuda`` / ``cuda:N``, or ``auto`` (a CUDA GPU
  when torch sees one, else the CPU). Models trained anywhere come back on the CPU and are saved
  from there; checkpoints are loaded onto the CPU (``map_location``) and moved to the device.
"""

from __future__ import annotations

from typing import Any

from models.exceptions import DeviceError

DEFAULT_THREADS = 2
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
"""The device preferences :func:`device` accepts."""


def set_threads(n: int | None = None) -> None:
    """Keep torch to a modest number of CPU threads (``n``, default 2).

    The MIL model is tiny (its matrices are a few dozen wide), so training and inference ask for
    1 thread, which is faster than 2 on a busy machine; image encoders (CNN / ViT checkpoints)
    ask for the default.
    """
    import torch

    want = n or DEFAULT_THREADS
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)


def device(preference: Any = "cpu") -> Any:
    """The ``torch.device`` for ``preference``.

    Parameters
    ----------
    preference
        ``"cpu"`` (or None), ``"cuda"``, ``"cuda:N"``, ``"auto"`` (``cuda`` when
        ``torch.cuda.is_available()``, else ``cpu``), or a ``torch.device``.

    Raises
    ------
    DeviceError
        An unknown name, or ``cuda`` asked for where torch sees no CUDA GPU (or not that many).
    """
    import torch

    if isinstance(preference, torch.device):
        preference = str(preference)
    pref = str(preference or "cpu").strip().lower()
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref == "cuda" or pref.startswith("cuda:"):
        try:
            dev = torch.device(pref)
        except RuntimeError as err:
            raise DeviceError(f"unknown torch device {preference!r}: use one of {DEVICES}") from err
        if not torch.cuda.is_available():
            raise DeviceError(
                f"torch device {preference!r} asked for, but torch sees no CUDA GPU on this "
                "machine (no GPU, no driver, or a CPU-only torch build): use 'cpu', or 'auto' "
                "to take a GPU only where there is one"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"torch device {preference!r} asked for, but torch sees "
                f"{torch.cuda.device_count()} CUDA GPU(s) (cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1})"
            )
        return dev
    raise DeviceError(f"unknown torch device {preference!r}: use one of {DEVICES}")


def module_device(module: Any) -> Any:
    """The device a torch module's parameters (or, without any, its buffers) live on."""
    import torch

    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")
