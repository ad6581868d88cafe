"""``irtmon train pathology`` and ``irtmon pathology analyse``: the pathology MIL model's shell.

Register with::

    from irtmon.cli_pathology import pathology_app, train_pathology_app
    app.add_typer(train_pathology_app, name="train")       # irtmon train pathology ...
    app.add_typer(pathology_app, name="pathology")         # irtmon pathology analyse ...

or, when a shared ``train`` group exists, ``train_app.command("pathology")(train_pathology)``.
The science lives in :mod:`models.pathology`; this module only parses options, shows progress,
and registers the trained artefact in the database (the one place the DB is touched).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from irtmon.common import TorchDevice, console, err_console, fail, get_settings, torch_device

train_pathology_app = typer.Typer(help="Train models.", no_args_is_help=True)
pathology_app = typer.Typer(help="Pathology: slides to an immune signature.", no_args_is_help=True)


class EncoderKind(StrEnum):
    HANDCRAFTED = "handcrafted"
    CHECKPOINT = "checkpoint"


def _cohort(out: Path, cohort: Path | None, patients: int, seed: int, workers: int) -> Path:
    """The cohort to train on: the one given, or a virtual-clinic cohort generated (once)."""
    from clinic.cohort import demo_key, generate_cohort

    if cohort is not None:
        if not cohort.is_dir():
            raise fail(f"cohort folder {cohort} does not exist")
        return cohort
    target = out / "cohort"
    meta = target / "cohort.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("seed") == seed and info.get("n_patients", info.get("patients")) == patients:
            err_console.print(f"reusing the virtual cohort in {target}")
            return target
    secret = get_settings().pseudonym_key
    key = secret.get_secret_value() if secret is not None else demo_key(seed)
    with Progress(
        TextColumn("[bold]virtual clinic"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task("generate", total=patients)
        # one CT session per patient: the slides are what this model needs
        generate_cohort(
            target,
            patients,
            seed,
            "test",
            key=key,
            n_timepoints=1,
            workers=workers,
            progress=lambda done: bar.update(task, completed=done),
        )
    return target


def train_pathology(
    out: Annotated[Path, typer.Option(help="Run folder: report, plots, weights, cohort.")],
    patients: Annotated[int, typer.Option(min=6, help="Virtual patients to generate.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the cohort, split and training.")] = 1,
    cohort: Annotated[
        Path | None, typer.Option(help="Train on this cohort (manifest) instead of generating.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes reading slides.")] = 2,
    version: Annotated[
        str | None, typer.Option(help="Artefact version (default: UTC time and seed).")
    ] = None,
    models_dir: Annotated[
        Path | None, typer.Option(help="Where artefacts go (default IRTMON_MODELS_DIR).")
    ] = None,
    encoder: Annotated[EncoderKind, typer.Option(help="Tile encoder.")] = EncoderKind.HANDCRAFTED,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Local foundation-model checkpoint (encoder=checkpoint).")
    ] = None,
    arch: Annotated[
        str | None, typer.Option(help="'module:callable' building the net of a state dict.")
    ] = None,
    magnification: Annotated[float, typer.Option(help="Objective magnification read.")] = 20.0,
    stain_normalise: Annotated[bool, typer.Option(help="Macenko-normalise tiles.")] = False,
    max_epochs: Annotated[int, typer.Option(min=1)] = 300,
    patience: Annotated[int, typer.Option(min=1, help="Early-stopping patience.")] = 40,
    register: Annotated[
        bool | None,
        typer.Option(
            "--register/--no-register",
            help="Record the model in the database (default: when IRTMON_DATABASE_URL is set).",
        ),
    ] = None,
    promote: Annotated[bool, typer.Option(help="Also promote it (needs registering).")] = False,
    device: TorchDevice = None,
) -> None:
    """Train the pathology MIL model on virtual-clinic slides and report held-out metrics."""
    from models.exceptions import IrtmonError
    from models.pathology import (
        CheckpointEncoder,
        HandcraftedEncoder,
        TileSpec,
        TrainConfig,
        magnification_to_mpp,
    )
    from models.pathology import (
        train_pathology as run_training,
    )

    settings = get_settings()
    on = torch_device(device)
    out.mkdir(parents=True, exist_ok=True)
    version = version or f"{datetime.now(UTC):%Y%m%d-%H%M%S}-seed{seed}"
    models_dir = models_dir or settings.models_dir
    start = time.perf_counter()
    try:
        if encoder is EncoderKind.CHECKPOINT:
            if checkpoint is None:
                raise fail("--encoder checkpoint needs --checkpoint PATH")
            enc = CheckpointEncoder(checkpoint, arch=arch)
        else:
            enc = HandcraftedEncoder()
        cohort_dir = _cohort(out, cohort, patients, seed, workers)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
        ) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    label = "slides encoded" if stage == "features" else "epochs (early stop)"
                    tasks[stage] = bar.add_task(label, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            run = run_training(
                cohort_dir,
                out,
                encoder=enc,
                tile_spec=TileSpec(
                    mpp=magnification_to_mpp(magnification), stain_normalise=stain_normalise
                ),
                config=TrainConfig(seed=seed, max_epochs=max_epochs, patience=patience),
                workers=workers,
                models_dir=models_dir,
                version=version,
                cache_dir=out / "features",
                progress=progress,
                device=on,
            )
    except (IrtmonError, ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from err

    m = run.metrics

    def num(value: object, spec: str = ".3f") -> str:
        return "n/a (too few held-out slides)" if value is None else format(value, spec)

    table = Table(title=f"pathology-mil {version}: held-out patients")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("test slides / patients", f"{m['n_slides']['test']} / {m['n_patients']['test']}")
    table.add_row("balanced accuracy", num(m.get("balanced_accuracy")))
    table.add_row("TIL Spearman (intratumoral)", num(m.get("til_spearman_intratumoral")))
    if m.get("til_spearman_slide_lymphocyte_density") is not None:
        table.add_row(
            "TIL Spearman (slide lymphocytes)", num(m.get("til_spearman_slide_lymphocyte_density"))
        )
    table.add_row("ECE", num(m.get("ece")))
    for ph, e in m.get("attention_enrichment", {}).items():
        table.add_row(
            f"attention top-10% lymphocyte ratio, {ph}",
            f"{num(e.get('median'), '.2f')} (ceiling {num(e.get('oracle_median'), '.2f')})",
        )
    table.add_row("best epoch / run", f"{m['best_epoch']} / {m['epochs_run']}")
    table.add_row("total time", f"{time.perf_counter() - start:.1f} s")
    console.print(table)
    console.print(f"report: {run.report_files['report']}")
    if run.artifact is not None:
        console.print(f"model:  {run.artifact.folder}  (sha256 {run.artifact.sha256[:12]})")
        should_register = register if register is not None else bool(settings.database_url)
        if should_register:
            _register(settings, run.artifact, promote)
        elif promote:
            raise fail("--promote needs --register (or IRTMON_DATABASE_URL)")


def _register(settings: object, artifact: object, promote: bool) -> None:
    import psycopg

    from core.db import connect
    from core.db.registry import promote as promote_model
    from core.db.registry import register

    try:
        with connect(settings) as conn:  # type: ignore[arg-type]
            register(conn, artifact)  # type: ignore[arg-type]
            if promote:
                promote_model(conn, artifact.name, artifact.version)  # type: ignore[attr-defined]
            conn.commit()
    except (psycopg.Error, OSError) as err:
        raise fail(f"the model was saved but not registered in the database: {err}") from err
    console.print(
        f"registered {artifact.name} {artifact.version} in the database"  # type: ignore[attr-defined]
        + (" and promoted it" if promote else "")
    )


train_pathology_app.command("pathology")(train_pathology)


@train_pathology_app.callback()
def _train_group() -> None:
    """Train models (a group even with one command, so `train pathology` reads the same)."""


@pathology_app.command("analyse")
def analyse(
    slide: Annotated[Path, typer.Argument(help="Pyramidal TIFF or SVS slide.")],
    model: Annotated[Path, typer.Option(help="Artefact folder <models_dir>/pathology-mil/<v>.")],
    heatmap: Annotated[Path | None, typer.Option(help="Write the heat-map PNG here.")] = None,
    mc_samples: Annotated[int, typer.Option(min=0, help="MC-dropout passes.")] = 16,
) -> None:
    """Immune signature of one slide, as JSON on stdout."""
    from models.exceptions import InsufficientDataError, IrtmonError
    from models.pathology import analyse_slide

    try:
        result = analyse_slide(slide, model, heatmap_path=heatmap, mc_samples=mc_samples)
    except InsufficientDataError as err:
        console.print_json(
            json.dumps({"slide": str(slide), "insufficient": True, "reason": str(err)})
        )
        raise typer.Exit(code=2) from err
    except IrtmonError as err:
        raise fail(str(err)) from err
    console.print_json(json.dumps({**result.to_dict(), "seconds": result.seconds}))
