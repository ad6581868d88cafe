"""The ``irtmon`` command line (typer). Every command has ``--help``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler
from rich.table import Table

from core.settings import Settings
from irtmon.cli_clinic import Story
from irtmon.common import console, err_console, fail, get_settings

app = typer.Typer(
    help="irtmon: immuno-radiotherapy response monitor. Configure with IRTMON_* variables "
    "(see `irtmon config`).",
    no_args_is_help=True,
    add_completion=False,
)
stack_app = typer.Typer(
    help="Run the local stack: a real Kafka broker and PostgreSQL server.", no_args_is_help=True
)
db_app = typer.Typer(help="Database migrations and status.", no_args_is_help=True)
schemas_app = typer.Typer(
    help="Event contracts: JSON Schema export and checks.", no_args_is_help=True
)
publish_app = typer.Typer(help="Publish events to Kafka by hand.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")
app.add_typer(schemas_app, name="schemas")
app.add_typer(publish_app, name="publish")
audit_app = typer.Typer(help="Checks that nothing was lost or doubled.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _register_subapps() -> None:
    from irtmon.cli_clinic import clinic_app

    app.add_typer(clinic_app, name="clinic")

    from irtmon.cli_imaging import imaging_app
    from irtmon.cli_pathology import pathology_app, train_pathology_app

    app.add_typer(imaging_app, name="imaging")
    app.add_typer(train_pathology_app, name="train")
    app.add_typer(pathology_app, name="pathology")

    from irtmon.cli_models import register as register_model_commands

    register_model_commands(app, train_pathology_app)

    from irtmon.cli_models import models_app
    from irtmon.cli_reference import reference

    models_app.command("reference")(reference)

    from irtmon.cli_pacs import fhir_app, pacs_app

    app.add_typer(pacs_app, name="pacs")
    app.add_typer(fhir_app, name="fhir")

    from irtmon.cli_app import register as register_app_commands

    register_app_commands(app)

    from irtmon.cli_deadletters import deadletters_app

    app.add_typer(deadletters_app, name="deadletters")

    from irtmon.cli_evaluate import evaluate

    app.command("evaluate")(evaluate)


_register_subapps()


def _quiet_mirp(record: logging.LogRecord) -> bool:
    """MIRP logs every feature computation at INFO on the root logger: keep its warnings only."""
    return record.levelno >= logging.WARNING or f"{os.sep}mirp{os.sep}" not in record.pathname


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    settings = get_settings()
    level = "DEBUG" if verbose else settings.log_level
    handler = RichHandler(console=err_console)
    handler.addFilter(_quiet_mirp)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler])
    for noisy in ("kafka", "highdicom", "faust", "aiokafka", "mode"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- config


@app.command("config")
def config_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output: variable -> value.")
    ] = False,
) -> None:
    """List every setting with its environment variable, current value and meaning (secrets
    masked, and the password of a URL)."""
    settings = get_settings()
    # secrets as ********, URLs (the database's) with their password masked
    shown = {f"IRTMON_{name.upper()}": settings.shown(name) for name in Settings.model_fields}
    if as_json:
        print(json.dumps(shown, indent=1))
        return
    table = Table("variable", "value", "meaning")
    for (variable, value), field in zip(shown.items(), Settings.model_fields.values(), strict=True):
        table.add_row(variable, value, field.description or "")
    console.print(table)


# --------------------------------------------------------------------------- stack


def _print_status(st: object) -> None:
    from irtmon.stack import StackStatus

    assert isinstance(st, StackStatus)
    table = Table("component", "state", "pid", "address", "detail")
    for c in st.components:
        state = "[green]running[/]" if c.running else "[red]stopped[/]"
        if not c.managed:
            state += " (external)"
        table.add_row(c.name, state, str(c.pid or "-"), c.address, c.detail)
    console.print(table)
    flavour = st.database_flavour or "not migrated (run `irtmon db migrate`)"
    console.print(f"database flavour: [bold]{flavour}[/]")
    if st.workers:
        console.print(
            "workers: "
            + ", ".join(
                f"pid {pid} (health http://127.0.0.1:{port}/health)"
                for port, pid in st.workers.items()
            )
        )
    if st.topics:
        console.print("topics: " + ", ".join(f"{k} ({v} partitions)" for k, v in st.topics.items()))


@stack_app.command("up")
def stack_up(
    with_pacs: Annotated[
        bool,
        typer.Option(
            "--with-pacs",
            help="Also start a loopback Orthanc PACS (DICOMweb, irtmon's plugin publishing "
            "imaging.acquired for every stable study), or check the one IRTMON_PACS_URL names.",
        ),
    ] = False,
) -> None:
    """Start the local Kafka broker and PostgreSQL server (idempotent) and create the topics.

    Waits until both accept connections, then prints where they listen. Servers named by
    IRTMON_KAFKA_BOOTSTRAP or IRTMON_DATABASE_URL are used as they are; nothing is started
    for them.
    """
    from irtmon import stack

    settings = get_settings()
    with console.status("starting the local stack (first run resolves the Kafka jars)..."):
        try:
            st = stack.up(settings, with_pacs=with_pacs)
        except stack.StackError as err:
            raise fail(str(err)) from err
    _print_status(st)
    console.print(f"Kafka:      {settings.bootstrap_servers}")
    console.print(f"PostgreSQL: {settings.dsn_masked}")
    if with_pacs:
        console.print(f"Orthanc:    {settings.pacs_http} (DICOMweb {settings.dicomweb_url})")
        console.print(
            f"            DICOM {settings.orthanc_aet}@127.0.0.1:{settings.orthanc_dicom_port} "
            "(irtmon pacs send FOLDER)"
        )


@stack_app.command("acls")
def stack_acls() -> None:
    """Create each service's Kafka ACLs on a SASL_SSL cluster (idempotent), as the admin
    principal of IRTMON_KAFKA_SASL_USERNAME: the workers, Orthanc's plugin and the publishing
    tools each get only what they do (see irtmon/stack/kafka_security.py)."""
    from irtmon.stack.kafka_security import apply_acls

    settings = get_settings()
    if not settings.kafka_security_protocol.startswith("SASL_"):
        raise fail("ACLs need SASL principals: set IRTMON_KAFKA_SECURITY_PROTOCOL=SASL_SSL")
    try:
        count = apply_acls(settings)
    except Exception as err:  # the broker's refusal, said plainly
        raise fail(f"creating the ACLs failed: {err}") from err
    console.print(f"{count} ACLs in place for consumer group {settings.consumer_group}")


@stack_app.command("secrets")
def stack_secrets(
    folder: Annotated[
        Path, typer.Argument(help="Where the compose file's secrets live (docker/secrets).")
    ],
) -> None:
    """Write the compose deployment's missing secret files (random; existing ones are kept).
    Their values are never printed."""
    from irtmon.stack.secrets import COMPOSE_SECRETS, write_secrets

    written = write_secrets(folder)
    for name, what in COMPOSE_SECRETS.items():
        state = "written" if name in written else "kept"
        console.print(f"{state:8} {folder / name}: {what}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the local Kafka broker and PostgreSQL server (external servers are left alone)."""
    from irtmon import stack

    stopped = stack.down(get_settings())
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Say what runs, with pids and ports, and the database flavour (TimescaleDB or plain)."""
    from dataclasses import asdict

    from irtmon import stack

    st = stack.status(get_settings())
    if as_json:
        console.print_json(json.dumps(asdict(st)))
    else:
        _print_status(st)


# --------------------------------------------------------------------------- db


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending SQL migrations (safe to re-run). Chooses TimescaleDB or plain tables."""
    from core.db import connect, migrate

    settings = get_settings()
    try:
        with connect(settings, autocommit=True) as conn:
            report = migrate(conn, settings.timescaledb)
    except Exception as err:
        raise fail(str(err)) from err
    console.print(f"database flavour: [bold]{report.flavour}[/] ({report.reason})")
    if report.applied:
        console.print("applied: " + ", ".join(report.applied))
    else:
        console.print("nothing to apply: the database is up to date")
    if settings.reference_models:
        install_reference_models(settings)


def install_reference_models(settings: Settings) -> None:
    """Register and promote the repository's reference models for the names with no promoted
    version (IRTMON_REFERENCE_MODELS; trained on the virtual clinic, not for clinical use)."""
    import psycopg

    from core.db import connect
    from core.reference_models import install_reference_models as install
    from models.exceptions import ModelError

    try:
        with connect(settings) as conn:
            done = install(
                conn, source=settings.reference_models_dir, models_dir=settings.models_dir
            )
            conn.commit()
    except (ModelError, OSError, psycopg.Error) as err:
        raise fail(
            f"the reference models in {settings.reference_models_dir} could not be installed: "
            f"{err} (set IRTMON_REFERENCE_MODELS=false to start without them)"
        ) from err
    for item in done:
        if item.action == "promoted":
            console.print(
                f"model {item.name}: reference {item.version} registered and promoted "
                "(virtual clinic, not for clinical use)"
            )
        elif item.action == "restored":
            console.print(
                f"model {item.name}: reference {item.version} (promoted) copied back into its "
                "registered folder, which was missing"
            )
        else:
            console.print(f"model {item.name}: {item.version} (promoted)")


@db_app.command("status")
def db_status() -> None:
    """List applied migrations and their flavour."""
    from core.db import connect, migration_status

    try:
        with connect(get_settings(), autocommit=True) as conn:
            rows = migration_status(conn)
    except Exception as err:
        raise fail(str(err)) from err
    table = Table("version", "file", "flavour", "applied at")
    for version, filename, flavour, at in rows:
        table.add_row(str(version), filename, flavour, at)
    console.print(table if rows else "no migration applied yet")


# --------------------------------------------------------------------------- schemas


@schemas_app.command("export")
def schemas_export() -> None:
    """Write the JSON Schema file of every topic's record into schemas/json/."""
    from schemas.export import export

    for path in export():
        console.print(f"wrote {path}")


@schemas_app.command("validate")
def schemas_validate(
    topic: Annotated[str, typer.Argument(help="Topic whose record to validate against.")],
    file: Annotated[typer.FileBinaryRead, typer.Argument(help="JSON file, or - for stdin.")],
) -> None:
    """Validate one event (JSON) against a topic's contract; exit 1 naming each bad field."""
    from schemas import InvalidEventError, parse_event
    from schemas import topic as find_topic

    try:
        spec = find_topic(topic)
        event = parse_event(spec.record, file.read())
    except (KeyError, InvalidEventError) as err:
        raise fail(str(err).strip("'\"")) from err
    console.print(f"valid {type(event).__name__} {event.event_id}")


# --------------------------------------------------------------------------- publish


@publish_app.command("samples")
def publish_samples() -> None:
    """Publish a few valid sample events (two demo patients) to their topics."""
    from core.publish import Publisher, topic_for
    from irtmon.samples import sample_events

    events = sample_events()
    settings = get_settings()
    try:
        with Publisher(settings) as pub:
            n = pub.publish(events)
    except Exception as err:
        raise fail(f"could not publish to {settings.bootstrap_servers}: {err}") from err
    by_topic: dict[str, int] = {}
    for e in events:
        by_topic[topic_for(e).name] = by_topic.get(topic_for(e).name, 0) + 1
    console.print(f"published {n} events: " + ", ".join(f"{k} {v}" for k, v in by_topic.items()))


def _pseudonym(patient_id: str | None, pseudonym: str | None) -> str:
    """A pseudonym from --pseudonym, or made from --patient-id with IRTMON_PSEUDONYM_KEY."""
    from schemas import is_pseudonym, pseudonymise

    if pseudonym:
        if not is_pseudonym(pseudonym):
            raise fail(f"--pseudonym {pseudonym!r} is not a pseudonym (psn- and 16 hex digits)")
        return pseudonym
    if not patient_id:
        raise fail("give --patient-id (pseudonymised at once) or --pseudonym")
    key = get_settings().pseudonym_key
    if key is None:
        raise fail("set IRTMON_PSEUDONYM_KEY to pseudonymise --patient-id")
    return pseudonymise(patient_id, key.get_secret_value())


def _publish_one(event: object) -> None:
    from core.publish import Publisher, topic_for

    settings = get_settings()
    try:
        with Publisher(settings) as pub:
            pub.publish([event])  # type: ignore[list-item]
    except Exception as err:
        raise fail(f"could not publish to {settings.bootstrap_servers}: {err}") from err
    console.print(
        f"published {type(event).__name__} {event.event_id} to "  # type: ignore[attr-defined]
        f"{topic_for(event).name}"
    )  # type: ignore[arg-type]


def _when(value: str | None):
    from datetime import UTC, datetime

    if value is None:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


PatientId = Annotated[
    str | None,
    typer.Option(
        help="Clear patient ID; pseudonymised at once with IRTMON_PSEUDONYM_KEY and never sent."
    ),
]
PseudonymOpt = Annotated[str | None, typer.Option(help="An existing pseudonym instead.")]
WhenOpt = Annotated[str | None, typer.Option(help="ISO time it happened (default: now).")]


@publish_app.command("file")
def publish_file(
    topic: Annotated[str, typer.Argument(help="Registry topic, e.g. imaging.acquired.")],
    file: Annotated[typer.FileBinaryRead, typer.Argument(help="JSON event, or - for stdin.")],
) -> None:
    """Validate an event (JSON) against the topic's contract and publish it."""
    from schemas import InvalidEventError, parse_event
    from schemas import topic as find_topic

    try:
        event = parse_event(find_topic(topic).record, file.read())
    except (KeyError, InvalidEventError) as err:
        raise fail(str(err).strip("'\"")) from err
    _publish_one(event)


@publish_app.command("imaging")
def publish_imaging(
    folder: Annotated[str, typer.Option(help="Folder holding the DICOM series.")],
    study_uid: Annotated[str, typer.Option(help="Study Instance UID.")],
    series_uid: Annotated[list[str], typer.Option(help="Series Instance UID (repeatable).")],
    modality: Annotated[str, typer.Option(help="CT or PCCT.")] = "CT",
    purpose: Annotated[str, typer.Option(help="planning, follow_up or unknown.")] = "unknown",
    rtstruct: Annotated[str | None, typer.Option(help="RTSTRUCT file of the target.")] = None,
    seg: Annotated[str | None, typer.Option(help="DICOM SEG file of the target.")] = None,
    patient_id: PatientId = None,
    pseudonym: PseudonymOpt = None,
    when: WhenOpt = None,
) -> None:
    """Send an imaging.acquired event for a series in a folder, as a scanner would."""
    from pydantic import ValidationError

    from schemas import FolderLocation, ImagingAcquired, LesionReference

    lesion = None
    if rtstruct or seg:
        lesion = LesionReference(kind="rtstruct" if rtstruct else "seg", path=rtstruct or seg)
    try:
        event = ImagingAcquired(
            patient=_pseudonym(patient_id, pseudonym),
            occurred_at=_when(when),
            modality=modality,
            study_uid=study_uid,
            series_uids=series_uid,
            location=FolderLocation(path=folder),
            purpose=purpose,
            lesion=lesion,
        )
    except ValidationError as err:
        raise fail(str(err)) from err
    _publish_one(event)


@publish_app.command("biopsy")
def publish_biopsy(
    specimen_id: Annotated[str, typer.Option(help="Specimen (accession) id.")],
    slide: Annotated[list[str], typer.Option(help="Slide file path (repeatable).")],
    pd_l1_tps: Annotated[float | None, typer.Option(help="PD-L1 TPS, per cent.")] = None,
    patient_id: PatientId = None,
    pseudonym: PseudonymOpt = None,
    when: WhenOpt = None,
) -> None:
    """Send a biopsy.acquired event for scanned slides, as a LIMS would."""
    from pathlib import Path

    from pydantic import ValidationError

    from schemas import BiopsyAcquired, LabValues, SlideLocation

    try:
        event = BiopsyAcquired(
            patient=_pseudonym(patient_id, pseudonym),
            occurred_at=_when(when),
            specimen_id=specimen_id,
            lab=LabValues(pd_l1_tps=pd_l1_tps),
            slides=[SlideLocation(slide_id=Path(p).stem, path=p) for p in slide],
        )
    except ValidationError as err:
        raise fail(str(err)) from err
    _publish_one(event)


@publish_app.command("treatment")
def publish_treatment(
    kind: Annotated[
        str, typer.Argument(help="rt_course_start, rt_fraction or immunotherapy_dose.")
    ],
    course_id: Annotated[str, typer.Option(help="RT course id.")] = "C1",
    dose_gy: Annotated[
        float | None, typer.Option(help="Fraction dose or prescribed dose, Gy.")
    ] = None,
    fractions: Annotated[int | None, typer.Option(help="Fractions planned (course start).")] = None,
    fraction_number: Annotated[int | None, typer.Option(help="Fraction number.")] = None,
    agent: Annotated[str | None, typer.Option(help="Immunotherapy agent.")] = None,
    cycle: Annotated[int | None, typer.Option(help="Immunotherapy cycle.")] = None,
    dose_mg: Annotated[float | None, typer.Option(help="Immunotherapy dose, mg.")] = None,
    patient_id: PatientId = None,
    pseudonym: PseudonymOpt = None,
    when: WhenOpt = None,
) -> None:
    """Send a treatment.events event, as the oncology information system would."""
    from pydantic import ValidationError

    from schemas import ImmunotherapyDose, RtCourseStart, RtFraction, TreatmentEvent

    try:
        if kind == "rt_course_start":
            detail: object = RtCourseStart(
                course_id=course_id, prescribed_dose_gy=dose_gy, fractions_planned=fractions
            )
        elif kind == "rt_fraction":
            detail = RtFraction(
                course_id=course_id, fraction_number=fraction_number, dose_gy=dose_gy
            )
        elif kind == "immunotherapy_dose":
            detail = ImmunotherapyDose(agent=agent, cycle=cycle, dose_mg=dose_mg)
        else:
            raise fail(f"unknown treatment kind {kind!r}")
        event = TreatmentEvent(
            patient=_pseudonym(patient_id, pseudonym), occurred_at=_when(when), treatment=detail
        )
    except ValidationError as err:
        raise fail(str(err)) from err
    _publish_one(event)


# --------------------------------------------------------------------------- audit


@audit_app.command("reconcile")
def audit_reconcile(
    show: Annotated[int, typer.Option(help="How many missing items to list.")] = 20,
) -> None:
    """Report events without results and results without events (exit 1 if any are missing)."""
    from core.db import connect
    from core.reconcile import reconcile

    settings = get_settings()
    try:
        with connect(settings, autocommit=True) as conn:
            report = reconcile(settings, conn)
    except Exception as err:
        raise fail(str(err)) from err
    console.print(
        f"messages on the input topics: {report.messages}; processed: {report.processed}; "
        f"dead-lettered: {report.dead_lettered}; duplicate deliveries on the topics: "
        f"{report.duplicates_on_topic}"
    )
    console.print(f"events without results: {len(report.events_without_results)}")
    for item in report.events_without_results[:show]:
        console.print(f"  {item}")
    console.print(
        f"results without events: {len(report.results_without_events)} "
        "(rows whose event is no longer, or never was, on a topic)"
    )
    console.print(f"scores without acquisitions: {report.scores_without_acquisitions}")
    console.print(f"duplicate scores: {report.duplicate_scores}")
    console.print(
        f"alert changes not yet delivered: {report.undelivered_alert_changes} "
        "(the outbox retries them)"
    )
    if not report.ok:
        raise typer.Exit(code=1)


# --------------------------------------------------------------------------- worker


@app.command("worker")
def worker(
    web_port: Annotated[
        int | None, typer.Option(help="Health/metrics port (default IRTMON_WORKER_WEB_PORT).")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Events the scoring agents handle at once (default IRTMON_WORKER_CONCURRENCY); "
            "one patient's events stay one at a time, in order.",
        ),
    ] = None,
) -> None:
    """Run one stream worker (all agents). Start several to share the partitions.

    Several processes in one consumer group (IRTMON_CONSUMER_GROUP) are the main way to scale:
    Kafka gives each its share of the partitions. --concurrency overlaps several patients'
    events inside one process (set IRTMON_WORKER_CPU_PROCESSES to match).
    """
    from streams.worker import run

    overrides: dict[str, object] = {}
    if web_port is not None:
        overrides["worker_web_port"] = web_port
    if concurrency is not None:
        overrides["worker_concurrency"] = concurrency
    sys.argv = ["irtmon-worker", "worker"]  # faust's Worker reads the command line
    run(get_settings().model_copy(update=overrides))


# --------------------------------------------------------------------------- demo


DEMO_TIMEPOINTS = 5
"""Scans per patient in the demo's cohort (planning CT and 4 follow-ups)."""
DEMO_GENERATE_WORKERS = 2
"""Processes that generate the demo's cohort."""


def _require_promoted(settings: Settings) -> None:
    """Without the reference models, the demo needs a promoted model of each name."""
    from core.db import connect
    from core.db.registry import model_ref
    from core.reference_models import REFERENCE_NAMES

    with connect(settings, autocommit=True) as conn:
        missing = [str(n) for n in REFERENCE_NAMES if model_ref(conn, n) is None]
    if missing:
        raise fail(
            f"no promoted {', '.join(missing)} model and IRTMON_REFERENCE_MODELS is off: train "
            "them (`irtmon models reference --out DIR`, then IRTMON_REFERENCE_MODELS_DIR=DIR) "
            "or promote your own (`irtmon models promote NAME VERSION`)"
        )


def _default_workers() -> int:
    """Worker processes of the demo: one per core, from 1 to 4."""
    return max(1, min(4, os.cpu_count() or 1))


@app.command("demo")
def demo(
    patients: Annotated[int, typer.Option(help="Virtual patients to generate.")] = 6,
    seed: Annotated[int, typer.Option(help="Virtual clinic seed.")] = 1,
    speedup: Annotated[float, typer.Option(help="Replay speed-up over real time.")] = 2e6,
    n_workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=8,
            help="Worker processes, sharing the partitions (default: one per core, at most 4).",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Acquisitions and biopsies each worker scores at once, each in a CPU process "
            "of its own (one patient's stay in order); more needs more memory.",
        ),
    ] = 1,
    app_port: Annotated[int, typer.Option(help="Port of the monitoring app.")] = 8501,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for every scan to be scored.")
    ] = 1200.0,
    story: Annotated[
        Story, typer.Option(help="Virtual-clinic story of the cohort (the reference models').")
    ] = Story.V2,
) -> None:
    """The main job: stack up, migrate, start the workers and the app, replay a virtual-clinic
    cohort, and wait until every scan and biopsy is scored and the alerts are evaluated.

    The cohort is generated once into the first data root (IRTMON_DATA_ROOTS), while the stack
    starts, and replayed onto Kafka as a scanner, a LIMS and an oncology system would send it;
    the workers score it into the database. Stop everything with `irtmon stack down`.
    """
    from irtmon.stack import StackError
    from irtmon.stack import app as local_app
    from irtmon.stack import workers as local_workers

    started = time.monotonic()
    settings = get_settings()
    cohort = Path(settings.data_roots[0]) / f"cohort-demo-{story.value}-seed{seed}"
    reused = (cohort / "events.jsonl").exists()
    generation = None
    if not reused:
        generation = _start_generation(settings, cohort, patients=patients, seed=seed, story=story)
    try:
        stack_up()
        db_migrate()  # registers the reference models where none is promoted
        if not settings.reference_models:
            _require_promoted(settings)
        try:
            app_process = local_app.launch(settings, app_port)  # starts while the rest runs
        except StackError as err:
            raise fail(str(err)) from err
        n_workers = n_workers or _default_workers()
        with console.status(f"starting {n_workers} worker(s)..."):
            try:
                running = local_workers.start(
                    settings,
                    n_workers,
                    environment={
                        "IRTMON_WORKER_CONCURRENCY": str(concurrency),
                        "IRTMON_WORKER_CPU_PROCESSES": str(concurrency),
                        "IRTMON_WORKER_WARM_START": "true",
                    },
                )
            except StackError as err:
                raise fail(str(err)) from err
        console.print(
            f"workers: {', '.join(str(p) for p in running.values())} (pids), each scoring "
            f"{concurrency} at once"
        )
        if generation is not None:
            _finish_generation(generation, cohort, settings)
            generation = None
        else:
            console.print(f"cohort: {cohort} (generated by an earlier run; reused)")
    finally:
        if generation is not None:  # stopped early: a later run resumes it (clinic generate)
            generation[0].terminate()
    from irtmon.cli_clinic import replay

    replay(cohort=cohort, speedup=speedup, max_delay=0.5)
    login = _ensure_demo_user(settings)
    if not isinstance(app_process, int):
        with console.status("starting the monitoring app..."):
            try:
                local_app.wait_ready(settings, app_process, app_port)
            except StackError as err:
                raise fail(str(err)) from err
    console.print(f"the app is up at http://127.0.0.1:{app_port}; the workers are scoring")
    example = _wait_for_scores(settings, cohort, timeout_s=wait)
    elapsed = time.monotonic() - started
    console.print(
        f"\n[bold green]irtmon is running[/] ({elapsed / 60:.1f} min, the cohort "
        f"{'reused' if reused else 'generated'}). The app: http://127.0.0.1:{app_port} {login}\n"
        f"{example}\n"
        f"Watch it with `irtmon stack status` and the logs in {settings.state_dir}/; stop it "
        "with `irtmon stack down`."
    )


def _start_generation(
    settings: Settings, cohort: Path, *, patients: int, seed: int, story: Story
) -> tuple[subprocess.Popen, Path]:
    """Start generating the demo's cohort in the background (`irtmon clinic generate`, which
    resumes a generation stopped part-way); returns the process and its log file."""
    log_file = settings.state_dir / "demo" / "generate.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-m",
        "irtmon",
        "clinic",
        "generate",
        f"--out={cohort}",
        f"--patients={patients}",
        f"--seed={seed}",
        "--size=test",
        f"--timepoints={DEMO_TIMEPOINTS}",
        f"--workers={DEMO_GENERATE_WORKERS}",
        f"--story={story.value}",
    ]
    with open(log_file, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    console.print(
        f"generating {patients} story-{story.value} patients (seed {seed}) into {cohort} while "
        f"the stack starts (log: {log_file})"
    )
    return process, log_file


def _finish_generation(
    generation: tuple[subprocess.Popen, Path], cohort: Path, settings: Settings
) -> None:
    """Wait for the cohort's generation; fail with its log's end if it failed."""
    from irtmon.stack.process import tail

    process, log_file = generation
    with console.status("generating the cohort..."):
        code = process.wait()
    if code != 0 or not (cohort / "events.jsonl").exists():
        raise fail(
            f"generating the demo cohort failed (exit status {code}); run the demo again to "
            f"resume it. The end of {log_file}:\n{tail(log_file)}"
        )
    last = tail(log_file, 1).strip()
    console.print(last or f"cohort written to {cohort}")


def _evaluated(settings: Settings) -> bool | None:
    """Whether the workers' consumer group has committed every acquisition and biopsy event,
    and after that every score: an acquisition is committed only once its scores are
    published, so the scores topic's end, read after, holds them all, and the change-point
    agent has evaluated them. None when the broker cannot say."""
    from irtmon.stack.topics import unconsumed
    from schemas.topics import BIOPSY_ACQUIRED, IMAGING_ACQUIRED, SCORES_TIMEPOINT

    try:
        for topic in (IMAGING_ACQUIRED, BIOPSY_ACQUIRED, SCORES_TIMEPOINT):  # in this order
            if unconsumed(settings, topic.name)[0]:
                return False
    except Exception:  # the admin API of an odd broker
        return None
    return True


def _wait_for_scores(settings: Settings, cohort: Path, *, timeout_s: float) -> str:
    """Wait until every replayed scan and biopsy is settled (scored or failed) and the alerts
    are evaluated (:func:`_evaluated`; if the broker cannot say, until the open alerts stop
    changing for three polls), then name a patient with an alert.

    Returns the line the demo prints about it (or says what is still pending at the timeout).
    """
    from clinic.events import load_events
    from core.db import connect
    from core.db.alerts import inbox
    from core.db.events import acquisition_counts
    from schemas import BiopsyAcquired, ImagingAcquired

    replayed = [e for e in load_events(cohort) if isinstance(e, ImagingAcquired | BiopsyAcquired)]
    scans = [e.event_id for e in replayed if isinstance(e, ImagingAcquired)]
    biopsies = [e.event_id for e in replayed if isinstance(e, BiopsyAcquired)]
    deadline = time.monotonic() + timeout_s
    steady, last_alerts = 0, -1
    with console.status(f"scoring {len(scans)} scans...") as shown:
        while True:
            with connect(settings, autocommit=True) as conn:
                counts = acquisition_counts(conn, scans)
                biopsy_counts = acquisition_counts(conn, biopsies)
                alerts = inbox(conn, None)
            pending = counts.get("received", 0) + counts["missing"]
            pending_biopsies = biopsy_counts.get("received", 0) + biopsy_counts["missing"]
            shown.update(
                f"scoring {len(scans)} scans: {counts.get('scored', 0)} scored, "
                f"{counts.get('failed', 0)} failed, {pending} pending; "
                f"{len(biopsies) - pending_biopsies} of {len(biopsies)} biopsies settled; "
                f"{len(alerts)} alert(s) open..."
            )
            done = False
            if pending == 0 and pending_biopsies == 0:
                evaluated = _evaluated(settings)
                steady = steady + 1 if len(alerts) == last_alerts else 0
                done = evaluated if evaluated is not None else steady >= 3
            last_alerts = len(alerts)
            if done or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    summary = (
        f"{counts.get('scored', 0)} of {len(scans)} scans scored"
        + (f", {counts['failed']} failed" if counts.get("failed") else "")
        + (f", {pending} still pending after {timeout_s:.0f} s" if pending else "")
    )
    if not alerts:
        return f"{summary}; no alert is open (yet): see the cohort page."
    first = alerts[0]
    return (
        f"{summary}; {len(alerts)} alert(s) open. A patient whose timeline shows one: "
        f"[bold]{first['patient']}[/] ({first['summary']})."
    )


def _ensure_demo_user(settings: Settings) -> str:
    """A demo admin with a random password, created once; returns how to log in."""
    import secrets

    from core.db import connect
    from core.db.users import save_user, user_exists
    from core.passwords import hash_password

    with connect(settings) as conn:
        if user_exists(conn, "demo"):
            return (
                "(user demo; its password was printed on the first demo run, or reset it "
                "with `irtmon users add demo --role admin`)"
            )
        password = secrets.token_urlsafe(12)
        save_user(conn, "demo", "admin", hash_password(password), [], actor="irtmon demo")
    return f"(log in as demo / {password}; shown once)"


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
