"""Faust agents and timers. Each module has ``register(app, topics, ctx)``, which
:func:`streams.app.build` calls for every module in :data:`AGENTS`.

Each agent documents what it consumes, produces and changes, and stays thin: receive a record,
call a pure function of ``models/`` off the event loop, persist, publish.
"""

from streams.agents import biopsy, changepoint, delivery, housekeeping, imaging, treatment

AGENTS = (imaging, biopsy, treatment, changepoint, delivery, housekeeping)

__all__ = ["AGENTS"]
