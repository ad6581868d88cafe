"""Torch run-time settings shared by the model modules (torch is imported lazily: it is heavy)."""

from __future__ import annotations

DEFAULT_THREADS = 2


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
