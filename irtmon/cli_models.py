"""``irtmon train ct-signature|response``, ``irtmon cohort features``, ``irtmon models
list|show|promote`` and ``irtmon rescore``: the response models' shell.

The science is in :mod:`models.response`; this module parses options, shows progress, finds
artefacts (a path, a version, or the promoted one) and touches the database for the registry
and for re-scoring.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from irtmon.common import TorchDevice, console, err_console, fail, get_settings, torch_device

models_app = typer.Typer(help="The model registry: list, show, promote.", no_args_is_help=True)
cohort_app = typer.Typer(
    help="Cohort feature extraction (the training cache), with its throughput.",
    no_args_is_help=True,
)

STAGE_LABELS = {"scans": "patients' studies analysed", "slides": "slides scored by the teacher"}


def resolve_artifact(name: str, ref: str | None, models_dir: Path) -> Path:
    """An artefact folder from a path, a version, or (None) the promoted/latest version."""
    from models.registry import latest_version

    if ref is not None:
        if Path(ref).is_dir():
            return Path(ref)
        folder = models_dir / name / ref
        if not folder.is_dir():
            raise fail(f"no {name} model {ref!r} (neither a folder nor a version in {models_dir})")
        return folder
    try:
        import psycopg

        from core.db import connect
        from core.db.registry import model_ref

        with connect(get_settings()) as conn:
            promoted = model_ref(conn, name)
        if promoted is not None:
            return promoted.folder
    except (psycopg.Error, OSError, RuntimeError):
        pass
    latest = latest_version(models_dir, name)
    if latest is None or latest.folder is None:
        raise fail(f"no {name} model found: train one, or pass its folder or version")
    return latest.folder


def _progress_bar() -> tuple[Progress, Any]:
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )
    tasks: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(STAGE_LABELS.get(stage, stage), total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return bar, progress


def _register(artifact: Any, promote: bool) -> None:
    import psycopg

    from core.db import connect
    from core.db.registry import promote as promote_model
    from core.db.registry import register

    try:
        with connect(get_settings()) as conn:
            register(conn, artifact)
            if promote:
                promote_model(conn, artifact.name, artifact.version)
            conn.commit()
    except (psycopg.Error, OSError) as err:
        raise fail(f"the model was saved but not registered in the database: {err}") from err
    console.print(
        f"registered {artifact.name} {artifact.version}" + (" and promoted it" if promote else "")
    )


Cohort = Annotated[
    list[Path],
    typer.Option(
        help="Training cohort folder (manifest.csv/parquet); repeat it to train on several "
        "(each patient in one of them)."
    ),
]
TestCohort = Annotated[
    list[Path] | None,
    typer.Option(
        help="Evaluate on this cohort (patients never seen); repeat it to pool several held-out "
        "cohorts; default: hold out 30 %."
    ),
]
Out = Annotated[Path, typer.Option(help="Run folder: report.md, metrics.json, plots, weights.")]
PathologyRef = Annotated[
    str | None,
    typer.Option(help="Teacher: pathology-mil folder or version (default: promoted/latest)."),
]
Version = Annotated[str | None, typer.Option(help="Artefact version (default: UTC time, seed).")]
ModelsDir = Annotated[
    Path | None, typer.Option(help="Where the artefact goes (default IRTMON_MODELS_DIR).")
]
Workers = Annotated[int, typer.Option(min=1, help="Processes analysing studies and slides.")]
Register = Annotated[
    bool | None,
    typer.Option(
        "--register/--no-register",
        help="Record the model in the database (default: when IRTMON_DATABASE_URL is set).",
    ),
]
Promote = Annotated[bool, typer.Option(help="Also promote it (needs registering).")]
Seed = Annotated[int, typer.Option(help="Seed of splits, bootstrap and training.")]
MaxPatients = Annotated[
    int | None, typer.Option(min=2, help="Use only the first N patients of the cohort.")
]
TestMaxPatients = Annotated[
    int | None, typer.Option(min=2, help="Use only the first N patients of the test cohort.")
]
MaxTimepoint = Annotated[
    int | None,
    typer.Option(min=0, help="Use studies up to this timepoint (0 planning, 1 fu1, ...)."),
]
Radiomics = Annotated[
    bool,
    typer.Option(
        "--radiomics/--no-radiomics",
        help="Also compute the radiomics and peritumoural features of every lesion (as the "
        "worker does); the models' default inputs need neither. A separate cache either way.",
    ),
]


def _selections(
    max_patients: int | None,
    test_max_patients: int | None,
    max_timepoint: int | None,
    radiomics: bool = False,
) -> tuple[Any, Any]:
    """The training and test cohorts' :class:`~models.response.train.Selection`."""
    from models.response.cohort import ExtractionOptions
    from models.response.train import Selection

    options = ExtractionOptions(radiomics=radiomics)
    return (
        Selection(max_patients, max_timepoint, options),
        Selection(test_max_patients, max_timepoint, options),
    )


def training_cache(settings: Any) -> Path:
    """The feature cache the ``train`` commands and ``cohort features`` share."""
    return Path(settings.derived_dir) / "training-cache"


def _finish(run: Any, register: bool | None, promote: bool) -> None:
    console.print(f"report: {run.report}")
    if run.artifact is None:
        return
    console.print(f"model:  {run.artifact.folder}  (sha256 {run.artifact.sha256[:12]})")
    if register if register is not None else bool(get_settings().database_url):
        _register(run.artifact, promote)
    elif promote:
        raise fail("--promote needs --register (or IRTMON_DATABASE_URL)")


def _train(
    run_training: Callable[..., Any],
    config: Callable[..., Any],
    cohort: Path | list[Path],
    out: Path,
    *,
    pathology_model: str | None,
    version: str | None,
    seed: int,
    device: str | None = None,
    artifacts: dict[str, tuple[str, str | None]] | None = None,
    models_dir: Path | None = None,
    test_cohort: Path | None = None,
    workers: int = 1,
    selections: tuple[Any, Any] | None = None,
) -> tuple[Any, str, float]:
    """The part the ``train`` commands share: resolve the teacher, then ``artifacts``
    (keyword -> model name and folder or version), default the version and the models folder
    (IRTMON_MODELS_DIR), build the :class:`~models.response.train.TrainingRequest`, run
    ``run_training`` under a progress bar with ``config(seed=seed)``, and turn the errors a
    user can act on into a clean failure. ``selections``: the training and test cohorts'
    :class:`~models.response.train.Selection`. Returns the run, its version and when training
    started."""
    from models.exceptions import IrtmonError
    from models.response.train import Selection, TrainingRequest

    selection, test_selection = selections or (Selection(), Selection())
    settings = get_settings()
    on = torch_device(device)
    teacher = resolve_artifact("pathology-mil", pathology_model, settings.models_dir)
    resolved = {
        key: resolve_artifact(name, ref, settings.models_dir)
        for key, (name, ref) in (artifacts or {}).items()
    }
    version = version or f"{datetime.now(UTC):%Y%m%d-%H%M%S}-seed{seed}"
    start = time.perf_counter()
    bar, progress = _progress_bar()
    try:
        with bar:
            request = TrainingRequest(
                cohort=cohort,
                out=out,
                pathology=teacher,
                test_cohort=test_cohort,
                selection=selection,
                test_selection=test_selection,
                cache_dir=training_cache(settings),
                models_dir=models_dir or settings.models_dir,
                version=version,
                workers=workers,
                progress=progress,
                device=on,
            )
            run = run_training(request, config=config(seed=seed), **resolved)
    except (IrtmonError, ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from err
    return run, version, start


def train_ct_signature(
    cohort: Cohort,
    out: Out,
    test_cohort: TestCohort = None,
    pathology_model: PathologyRef = None,
    version: Version = None,
    workers: Workers = 1,
    seed: Seed = 1,
    max_patients: MaxPatients = None,
    test_max_patients: TestMaxPatients = None,
    max_timepoint: MaxTimepoint = None,
    radiomics: Radiomics = False,
    register: Register = None,
    promote: Promote = False,
    device: TorchDevice = None,
    models_dir: ModelsDir = None,
) -> None:
    """Train the CT virtual biopsy on scans paired with biopsies (teacher: pathology model)."""
    from models.response.signature import SignatureConfig
    from models.response.train import train_ct_signature as run_training

    run, version, start = _train(
        run_training,
        SignatureConfig,
        cohort,
        out,
        pathology_model=pathology_model,
        version=version,
        seed=seed,
        device=device,
        models_dir=models_dir,
        test_cohort=test_cohort,
        workers=workers,
        selections=_selections(max_patients, test_max_patients, max_timepoint, radiomics),
    )
    m = run.metrics
    table = Table(title=f"ct-signature {version}: held-out paired scans")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in (
        ("n_pairs", "paired scans"),
        ("balanced_accuracy_vs_teacher", "balanced accuracy vs pathology model"),
        ("balanced_accuracy_vs_teacher_ct", "  conventional CT"),
        ("balanced_accuracy_vs_teacher_pcct", "  PCCT"),
        ("balanced_accuracy_vs_teacher_pcct_without_spectral", "  PCCT, spectral withheld"),
        ("balanced_accuracy_vs_truth", "balanced accuracy vs true phenotype"),
        ("til_spearman_vs_teacher", "TIL Spearman vs pathology model"),
    ):
        v = m.get(key)
        table.add_row(label, "n/a" if v is None else (str(v) if isinstance(v, int) else f"{v:.3f}"))
    table.add_row("total time", f"{time.perf_counter() - start:.0f} s")
    console.print(table)
    _finish(run, register, promote)


def train_response(
    cohort: Cohort,
    out: Out,
    test_cohort: TestCohort = None,
    pathology_model: PathologyRef = None,
    ct_signature: Annotated[
        str | None, typer.Option(help="ct-signature folder or version (default: promoted/latest).")
    ] = None,
    version: Version = None,
    workers: Workers = 1,
    seed: Seed = 1,
    max_patients: MaxPatients = None,
    test_max_patients: TestMaxPatients = None,
    max_timepoint: MaxTimepoint = None,
    radiomics: Radiomics = False,
    register: Register = None,
    promote: Promote = False,
    device: TorchDevice = None,
    models_dir: ModelsDir = None,
) -> None:
    """Train and calibrate the response model; compare it with its baselines on held-out
    patients (RECIST 1.1 over every target lesion, the burden trajectory of every lesion, of
    the primary lesion, in field, out of field, PD-L1 TPS, baseline pathology), in subgroups
    (with and without a biopsy, PCCT or CT)."""
    from models.response.response import ResponseConfig
    from models.response.train import train_response as run_training

    run, version, start = _train(
        run_training,
        ResponseConfig,
        cohort,
        out,
        pathology_model=pathology_model,
        version=version,
        seed=seed,
        device=device,
        artifacts={"ct_signature": ("ct-signature", ct_signature)},
        models_dir=models_dir,
        test_cohort=test_cohort,
        workers=workers,
        selections=_selections(max_patients, test_max_patients, max_timepoint, radiomics),
    )
    m = run.metrics
    table = Table(title=f"response {version}: non-response, held-out patients")
    for col in ("model", "AUC fu1", "AUC follow-ups", "ECE follow-ups"):
        table.add_column(col, justify="left" if col == "model" else "right")

    def f(v: object) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    for name, r in m["models"].items():
        table.add_row(
            name, f(r.get("auc_fu1")), f(r.get("auc_followups")), f(r.get("ece_followups"))
        )
    console.print(table)
    console.print(
        f"margin over the best baseline ({m['best_baseline']}) at fu1: "
        f"{m['auc_fu1_margin_over_best_baseline']:+.3f}; "
        f"{m['n_test_patients']} test patients; {time.perf_counter() - start:.0f} s"
    )
    _finish(run, register, promote)


# ------------------------------------------------------------------------- cohort features


@cohort_app.command("features")
def cohort_features(
    cohort: Annotated[Path, typer.Option(help="Cohort folder (manifest.csv/parquet).")],
    workers: Workers = 1,
    max_patients: MaxPatients = None,
    max_timepoint: MaxTimepoint = None,
    radiomics: Radiomics = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Feature cache (default: the training cache the train commands use)."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Also write the numbers as JSON to this file.")
    ] = None,
) -> None:
    """Extract every study's features into the cache (every lesion, tracked over time, as the
    worker does) and report the throughput: studies per hour, per core and per CPU hour.

    Patients run in WORKERS processes; each patient is cached the moment it is done, so a
    killed run resumes where it stopped. A cache made by another pipeline version or from
    other input files is refused and recomputed.
    """
    import os

    from models.exceptions import IrtmonError
    from models.response.cohort import ExtractionOptions, extract_features, select
    from schemas.manifest import read_manifest

    cache = cache_dir or training_cache(get_settings())
    try:
        manifest = select(read_manifest(cohort), max_patients, max_timepoint)
    except (FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from err
    bar, progress = _progress_bar()
    try:
        with bar:
            run = extract_features(
                cohort,
                manifest,
                cache / "scans",
                workers=workers,
                progress=progress,
                options=ExtractionOptions(radiomics=radiomics),
            )
    except (IrtmonError, ValueError) as err:
        raise fail(str(err)) from err
    numbers = run.summary()
    numbers.update(
        {
            "cohort": str(cohort),
            "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "radiomics": radiomics,
        }
    )
    table = Table(title=f"cohort features: {cohort}")
    table.add_column("")
    table.add_column("value", justify="right")

    def f(v: object) -> str:
        return "n/a" if v is None else str(v)

    for key, label in (
        ("patients", "patients"),
        ("patients_computed", "  analysed now"),
        ("patients_cached", "  from the cache"),
        ("stale", "  cache files refused (stale)"),
        ("skipped", "  skipped (see the log)"),
        ("studies_computed", "studies analysed now"),
        ("studies_cached", "studies from the cache"),
        ("wall_s", "wall time (s)"),
        ("cpu_s", "CPU time of the analyses (s)"),
        ("workers", "worker processes"),
        ("cores", "cores used"),
        ("studies_per_hour", "studies per hour"),
        ("studies_per_hour_per_core", "studies per hour per core"),
        ("studies_per_cpu_hour", "studies per CPU hour"),
        ("load_average_1min", "machine load (1 min)"),
    ):
        table.add_row(label, f(numbers.get(key)))
    console.print(table)
    for reason in run.skipped[:5]:
        err_console.print(f"[yellow]skipped[/] {reason}")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(numbers, indent=2) + "\n")
        console.print(f"numbers: {report}")


# ------------------------------------------------------------------------- registry


@models_app.command("list")
def list_models(
    name: Annotated[str | None, typer.Option(help="Only this model name.")] = None,
) -> None:
    """Registered models, newest first; the promoted version is marked."""
    from core.db import connect
    from core.db.registry import models

    with connect(get_settings()) as conn:
        rows = models(conn, name)
    table = Table(title="registered models")
    for col in ("name", "version", "promoted", "created", "sha256", "key metric"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            r["version"],
            "yes" if r["promoted"] else "",
            f"{r['created_at']:%Y-%m-%d %H:%M}",
            r["sha256"][:12],
            _key_metric(r["name"], r["metrics"] or {}),
        )
    console.print(table)


def _key_metric(name: str, m: dict[str, Any]) -> str:
    for key, label in (
        ("auc_fu1", "AUC fu1"),
        ("balanced_accuracy_vs_teacher", "bal. acc. vs teacher"),
        ("balanced_accuracy", "bal. acc."),
    ):
        if isinstance(m.get(key), int | float):
            return f"{label} {m[key]:.3f}"
    return ""


@models_app.command("show")
def show_model(
    name: Annotated[str, typer.Argument(help="Model name, e.g. response.")],
    version: Annotated[str | None, typer.Argument(help="Version (default: the promoted).")] = None,
) -> None:
    """A model's card, hash, training-data hash and metrics; its weights are verified."""
    from core.db import connect
    from core.db.registry import model_ref
    from models.exceptions import ModelError
    from models.registry import load_artifact

    with connect(get_settings()) as conn:
        try:
            ref = model_ref(conn, name, version)
        except ModelError as err:
            raise fail(str(err)) from err
        if ref is None:
            raise fail(f"{name} has no promoted version; pass one (irtmon models list)")
        current = model_ref(conn, name)
        promoted = current is not None and current.version == ref.version
    try:
        art = load_artifact(ref.folder, ref.sha256)
    except ModelError as err:
        raise fail(str(err)) from err
    console.print(f"[bold]{art.name} {art.version}[/]" + ("  (promoted)" if promoted else ""))
    console.print(f"folder:             {art.folder}")
    console.print(f"sha256:             {art.sha256}  (verified)")
    console.print(f"training data hash: {art.training_data_hash}")
    console.print(f"created:            {art.created_at}")
    console.print(f"card:               {art.card}")
    console.print_json(json.dumps(art.metrics, default=str))


@models_app.command("promote")
def promote_model(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to promote.")],
) -> None:
    """Make VERSION the one the workers load (verified first; audited)."""
    from core.db import connect
    from core.db.registry import model_ref, promote
    from models.exceptions import ModelError
    from models.registry import load_artifact

    with connect(get_settings()) as conn:
        try:
            ref = model_ref(conn, name, version)
            assert ref is not None
            load_artifact(ref.folder, ref.sha256)
            promote(conn, name, version)
        except (ModelError, ValueError) as err:
            raise fail(str(err)) from err
        conn.commit()
    console.print(
        f"promoted {name} {version}; workers use it for new scans. To recompute the stored "
        f"history with it: irtmon rescore --model {name}"
    )


def rescore(
    model: Annotated[str, typer.Option(help="ct-signature or response.")],
    version: Annotated[str | None, typer.Option(help="Version (default: the promoted).")] = None,
    patient: Annotated[str | None, typer.Option(help="Only this patient (pseudonym).")] = None,
) -> None:
    """Recompute the stored history's scores with a model version, kept beside the old ones
    (each score carries its model version), so versions can be compared on one timeline."""
    from core.db import connect
    from irtmon.rescore import rescore_patients
    from models.exceptions import IrtmonError

    if model not in ("ct-signature", "response"):
        raise fail("--model must be ct-signature or response")
    start = time.perf_counter()
    try:
        with connect(get_settings()) as conn:
            counts = rescore_patients(conn, model, version, patient)
    except IrtmonError as err:
        raise fail(str(err)) from err
    console.print(
        f"re-scored {counts['timepoints']} timepoints of {counts['patients']} patients with "
        f"{model} {counts['version']}: {counts['scores']} scores stored beside the earlier "
        f"versions' ({time.perf_counter() - start:.1f} s)"
    )


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the commands to the ``irtmon`` app and its ``train`` group."""
    train_app.command("ct-signature")(train_ct_signature)
    train_app.command("response")(train_response)
    app.add_typer(models_app, name="models")
    app.add_typer(cohort_app, name="cohort")
    app.command("rescore")(rescore)
