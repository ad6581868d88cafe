"""The CLI's console keeps third-party chatter out."""

from __future__ import annotations

import logging
import os

from irtmon.cli import _quiet_mirp


def _record(path: str, level: int) -> logging.LogRecord:
    return logging.LogRecord("root", level, path, 1, "message", None, None)


def test_mirp_info_is_dropped_but_its_warnings_and_ours_are_kept() -> None:
    mirp = os.path.join("site-packages", "mirp", "_workflows", "standardWorkflow.py")
    ours = os.path.join("models", "imaging", "radiomics.py")
    assert not _quiet_mirp(_record(mirp, logging.INFO))
    assert _quiet_mirp(_record(mirp, logging.WARNING))
    assert _quiet_mirp(_record(ours, logging.INFO))
