"""``irtmon clinic``: generate a virtual cohort, or replay its events onto Kafka.

Register with ``app.add_typer(clinic_app, name="clinic")``.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from irtmon.common import console, fail, get_settings

clinic_app = typer.Typer(help="The virtual clinic: synthetic patients, studies, slides, events.")


class Size(StrEnum):
    TEST = "test"
    SMALL = "small"
    REALISTIC = "realistic"


class Story(StrEnum):
    """Generative story of the virtual clinic (docs/clinic/story-v2.md describes v2)."""

    V1 = "v1"
    V2 = "v2"


@clinic_app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Cohort folder to write.")],
    patients: Annotated[int, typer.Option(min=1, help="Number of patients.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same cohort.")] = 0,
    size: Annotated[Size, typer.Option(help="Image sizes.")] = Size.TEST,
    timepoints: Annotated[int, typer.Option(min=1, help="CT sessions per patient.")] = 5,
    workers: Annotated[int, typer.Option(min=1, help="Parallel processes.")] = 1,
    story: Annotated[
        Story, typer.Option(help="Generative story: v1 (one target) or v2 (every lesion).")
    ] = Story.V1,
    variant: Annotated[
        str,
        typer.Option(
            help="Story-v2 variant for robustness tests (immune-none, immune-weaker, "
            "immune-stronger, reader-noisier, no-pcct, pseudo-half, pseudo-double, hyper-half, "
            "hyper-double: clinic/story_v2/variants.py).",
        ),
    ] = "base",
) -> None:
    """Generate a cohort: DICOM CT/PCCT, RTSTRUCT/SEG, slides, manifest, truth, events.

    A killed run resumes: run the same command again and it continues from the patients it
    finished (kept in OUT/.parts/ until the cohort is complete), writing the same files."""
    from clinic.cohort import demo_key, generate_cohort
    from clinic.story_v2.variants import BASE
    from clinic.story_v2.variants import variant as story_variant

    try:
        story_variant(variant)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if variant != BASE and story is not Story.V2:
        raise fail("--variant is a variant of story v2: add --story v2")
    secret = get_settings().pseudonym_key
    key = secret.get_secret_value() if secret is not None else demo_key(seed)
    if secret is None:
        console.print("[yellow]IRTMON_PSEUDONYM_KEY is not set: using the clinic's demo key.")
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]patients"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("generate", total=patients)
        generate_cohort(
            out,
            patients,
            seed,
            size.value,
            key=key,
            n_timepoints=timepoints,
            workers=workers,
            progress=lambda done: bar.update(task, completed=done),
            story=story.value,
            variant=variant,
        )
    told = "" if variant == BASE else f" ({variant})"
    console.print(
        f"wrote {patients} story-{story.value}{told} patients to {out} "
        f"in {time.perf_counter() - start:.1f} s"
    )


@clinic_app.command()
def replay(
    cohort: Annotated[Path, typer.Option(help="Cohort folder (holds events.jsonl).")],
    speedup: Annotated[float, typer.Option(help="Times faster than real time.")] = 86400.0,
    max_delay: Annotated[float | None, typer.Option(help="Longest wait between events, s.")] = None,
) -> None:
    """Publish a cohort's events to their topics, paced by their times at SPEEDUP."""
    from clinic.events import replay as replay_events
    from core.publish import Publisher

    count = 0
    with Publisher(get_settings(), client_id="irtmon-clinic-replay") as publisher:
        for delay, event in replay_events(cohort, speedup, max_delay):
            if delay > 0:
                publisher.flush()
                time.sleep(delay)
            publisher.send(event)
            count += 1
        publisher.flush()
    console.print(f"published {count} events from {cohort}")
