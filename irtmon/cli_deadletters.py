"""``irtmon deadletters``: list, show, replay and erase dead letters.

Registered in :mod:`irtmon.cli` as ``deadletters``. Reads the ``dead_letters`` table (payloads
need a database login in the ``irtmon_deadletters`` role: set ``IRTMON_DATABASE_URL`` to it),
or, with ``list --from-topic``, the ``deadletter`` topic. Replays go through
:func:`core.dead_letters.replay` (original bytes to the source topic, recorded in the audit
log, idempotent).
"""

from __future__ import annotations

import getpass
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from core.db.dead_letters import DeadLetterFilter, DeadLetterRow
from irtmon.common import console, fail, get_settings

deadletters_app = typer.Typer(
    help="Events no worker could process: list, show, replay (idempotent), erase old payloads.",
    no_args_is_help=True,
)

TopicOpt = Annotated[
    str | None, typer.Option("--topic", help="Source topic, e.g. imaging.acquired.")
]
ErrorOpt = Annotated[
    str | None, typer.Option("--error-class", help="Error class, e.g. InvalidEventError.")
]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="Dead-lettered at or after (ISO date or time; UTC if no zone)."),
]
PatientOpt = Annotated[str | None, typer.Option("--patient", help="Patient pseudonym (psn-...).")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="At most so many, oldest first.")]


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError as err:
        raise fail(f"--since {value!r} is not an ISO date or time (e.g. 2026-11-30T08:00)") from err
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _filters(
    topic: str | None, error_class: str | None, since: str | None, patient: str | None, limit: int
) -> DeadLetterFilter:
    return DeadLetterFilter(
        topic=topic, error_class=error_class, since=_since(since), patient=patient, limit=limit
    )


def _as_dict(row: DeadLetterRow) -> dict[str, object]:
    return {
        "event_id": str(row.event_id),
        "source": f"{row.source_topic}/{row.source_partition}/{row.source_offset}",
        "failed_event_id": str(row.failed_event_id) if row.failed_event_id else None,
        "patient": row.patient,
        "error_class": row.error_class,
        "reason": row.reason,
        "dead_lettered_at": row.dead_lettered_at.isoformat(),
        "payload_bytes": row.payload_bytes,
        "payload_erased_at": row.payload_erased_at.isoformat() if row.payload_erased_at else None,
    }


@deadletters_app.command("list")
def list_command(
    topic: TopicOpt = None,
    error_class: ErrorOpt = None,
    since: SinceOpt = None,
    patient: PatientOpt = None,
    limit: LimitOpt = 100,
    from_topic: Annotated[
        bool, typer.Option("--from-topic", help="Read the deadletter topic, not the table.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List dead letters (oldest first) with their reason."""
    from core import dead_letters
    from core.db import connect
    from core.db import dead_letters as rows

    settings = get_settings()
    filters = _filters(topic, error_class, since, patient, limit)
    try:
        if from_topic:
            letters = dead_letters.read_topic(settings, filters)
            found = [
                {
                    "event_id": str(d.event_id),
                    "source": f"{d.source_topic}/{d.partition}/{d.offset}",
                    "failed_event_id": str(d.failed_event_id) if d.failed_event_id else None,
                    "patient": d.patient,
                    "error_class": d.error_class,
                    "reason": d.reason,
                    "dead_lettered_at": d.occurred_at.isoformat(),
                    "payload_bytes": len(dead_letters.topic_payload(d)),
                    "payload_erased_at": None,
                }
                for d in letters
            ]
        else:
            with connect(settings) as conn:
                found = [_as_dict(r) for r in rows.find(conn, filters)]
    except Exception as err:
        raise fail(f"cannot read the dead letters: {err}") from err
    if as_json:
        for item in found:
            console.print_json(json.dumps(item))
        return
    table = Table(title=f"{len(found)} dead letter(s)" + (" on the topic" if from_topic else ""))
    for column in ("dead-lettered at", "id", "source", "patient", "error", "reason"):
        table.add_column(column, overflow="fold")
    for item in found:
        table.add_row(
            str(item["dead_lettered_at"])[:19],
            str(item["event_id"]),
            str(item["source"]),
            str(item["patient"] or "-"),
            str(item["error_class"]),
            str(item["reason"])[:200],
        )
    console.print(table)


@deadletters_app.command("show")
def show_command(
    event_id: Annotated[str, typer.Argument(help="The dead letter's id (from `list`).")],
    payload: Annotated[
        bool, typer.Option("--payload", help="Print the original bytes (UTF-8, else base64).")
    ] = False,
) -> None:
    """Show one dead letter: where it came from, why, and (with --payload) its bytes."""
    from core.db import connect
    from core.db import dead_letters as rows

    try:
        wanted = uuid.UUID(event_id)
    except ValueError as err:
        raise fail(f"{event_id!r} is not a dead letter id (a UUID; see `list`)") from err
    settings = get_settings()
    try:
        with connect(settings) as conn:
            row = rows.get(conn, wanted)
    except Exception as err:
        raise fail(f"cannot read the dead letter: {err}") from err
    if row is None:
        raise fail(f"no dead letter {wanted}")
    console.print_json(json.dumps(_as_dict(row)))
    if payload:
        if row.payload is None:
            console.print(f"payload erased at {row.payload_erased_at} (retention period)")
            return
        try:
            text = row.payload.decode()
        except UnicodeDecodeError:
            import base64

            text = "base64:" + base64.b64encode(row.payload).decode()
        console.print(text, markup=False, highlight=False, soft_wrap=True)


@deadletters_app.command("replay")
def replay_command(
    event_ids: Annotated[
        list[str] | None, typer.Argument(help="Dead letter ids; or select with the filters.")
    ] = None,
    topic: TopicOpt = None,
    error_class: ErrorOpt = None,
    since: SinceOpt = None,
    patient: PatientOpt = None,
    limit: LimitOpt = 1000,
    again: Annotated[
        bool, typer.Option("--again", help="Replay also those whose replay is recorded.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed.")] = False,
) -> None:
    """Republish dead letters' original bytes to their source topic (once each; audited)."""
    from core import dead_letters
    from core.db import connect
    from core.db import dead_letters as rows

    filters = _filters(topic, error_class, since, patient, limit)
    if not event_ids and filters == DeadLetterFilter(limit=limit):
        raise fail(
            "name dead letters by id or select them with a filter (--topic, "
            "--error-class, --since, --patient)"
        )
    settings = get_settings()
    try:
        with connect(settings) as conn:
            if event_ids:
                ids = [uuid.UUID(e) for e in event_ids]
                letters = [r for r in (rows.get(conn, i) for i in ids) if r is not None]
                unknown = set(ids) - {r.event_id for r in letters}
                if unknown:
                    raise fail("no dead letter " + ", ".join(sorted(map(str, unknown))))
            else:
                letters = rows.find(conn, filters, with_payload=True)
            conn.commit()
            if dry_run:
                for r in letters:
                    console.print(f"would replay {r.event_id} -> {r.source_topic}")
                return
            outcomes = dead_letters.replay(
                settings, conn, letters, actor=f"cli:{getpass.getuser()}", again=again
            )
    except typer.Exit:
        raise
    except ValueError as err:
        raise fail(str(err)) from err
    except Exception as err:
        raise fail(
            f"replay stopped: {err} (re-run it: replays already recorded are skipped)"
        ) from err
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status.value] = counts.get(o.status.value, 0) + 1
        if o.status != dead_letters.ReplayStatus.REPLAYED:
            console.print(f"{o.letter.event_id}: {o.status.value}")
    console.print(
        "; ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing matched"
    )


@deadletters_app.command("erase")
def erase_command() -> None:
    """Erase the payloads older than IRTMON_DEADLETTER_PAYLOAD_RETENTION_DAYS now (the worker's
    housekeeping does it on its timer)."""
    from core import dead_letters
    from core.db import connect

    settings = get_settings()
    try:
        with connect(settings) as conn:
            erased = dead_letters.erase_expired(conn, settings)
            conn.commit()
    except Exception as err:
        raise fail(f"cannot erase payloads: {err}") from err
    console.print(
        f"erased the payloads of {erased} dead letter(s) older than "
        f"{settings.deadletter_payload_retention_days:g} days"
    )
