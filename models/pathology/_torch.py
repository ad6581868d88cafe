"""Torch settings shared by the pathology modules (imported lazily: torch is heavy)."""

from __future__ import annotations

import os

_DEFAULT_THREADS = 2


def set_threads(n: int | None = None) -> None:
    """Keep torch to a modest number of CPU threads.

    ``IRTMON_TORCH_THREADS`` wins when set; otherwise ``n``, default 2. The MIL model is tiny
    (its matrices are a few dozen wide), so training and inference ask for 1 thread, which is
    faster than 2 on a busy machine; image encoders (CNN / ViT checkpoints) ask for the default.
    """
    import torch

    env = os.environ.get("IRTMON_TORCH_THREADS")
    want = int(env) if env else (n or _DEFAULT_THREADS)
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)
