"""The one base of irtmon's own errors, and how a caller routes each.

Every error irtmon raises on purpose derives from :class:`IrtmonError` and says, by its
``route``, what the caller does with it:

- :attr:`Route.RETRY`: an outage (database, broker, a server briefly down): try again later,
  with back-off; the event or request itself is fine.
- :attr:`Route.DEAD_LETTER`: the event itself cannot be processed (invalid, unreadable, a
  model missing): a worker records it on the dead-letter topic and table with the message,
  and goes on.
- :attr:`Route.REFUSE`: a person or a command asked for something that is not allowed or
  cannot be done: refuse with the message, which says what to change.

Built-in ``ValueError`` and ``TypeError`` stay for programming mistakes of a caller; classes
here often derive from one of them too, so older ``except ValueError`` code keeps working.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Route(StrEnum):
    """What a caller does with an error."""

    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    REFUSE = "refuse"


class IrtmonError(Exception):
    """Base of irtmon's own errors; ``route`` says how a caller handles it."""

    route: ClassVar[Route] = Route.REFUSE


class DeadLetterError(IrtmonError):
    """Base of errors that make an event a dead letter (the event itself is at fault)."""

    route: ClassVar[Route] = Route.DEAD_LETTER


class RetryableError(IrtmonError):
    """Base of errors worth retrying later (an outage, not a fault of the request)."""

    route: ClassVar[Route] = Route.RETRY


class RefusedError(IrtmonError):
    """Base of requests refused with a message that says what to change."""

    route: ClassVar[Route] = Route.REFUSE


__all__ = ["DeadLetterError", "IrtmonError", "RefusedError", "RetryableError", "Route"]
