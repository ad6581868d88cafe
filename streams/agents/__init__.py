"""Faust agents. Importing this package registers them on :data:`streams.app.app`.

Each agent documents what it consumes, produces and changes, and stays thin: receive a record,
call a pure function of ``models/`` off the event loop, persist, publish.
"""

from streams.agents import biopsy, changepoint, delivery, housekeeping, imaging, treatment

__all__ = ["biopsy", "changepoint", "delivery", "housekeeping", "imaging", "treatment"]
