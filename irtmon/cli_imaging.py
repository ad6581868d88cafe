"""``irtmon imaging``: the imaging science from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from models.exceptions import IrtmonError

imaging_app = typer.Typer(
    help="CT / PCCT imaging: burden, radiomics and spectral features of a series.",
    no_args_is_help=True,
)


@imaging_app.callback()
def _imaging() -> None:
    """CT / PCCT imaging: burden, radiomics and spectral features of a series."""


@imaging_app.command("features")
def features(
    path: Annotated[Path, typer.Argument(help="Study or series folder (DICOM files).")],
    series_uid: Annotated[
        str | None,
        typer.Option(
            "--series-uid",
            help="Series to analyse (default: the only one, or the VMI nearest 70 keV).",
        ),
    ] = None,
    lesion: Annotated[
        Path | None, typer.Option("--lesion", help="RTSTRUCT or SEG file of the lesion.")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="ROI name or segment label (default: GTV-like).")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline", help="Baseline study folder (with its RTSTRUCT/SEG) to propagate from."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write lesion-seg.dcm and burden-sr.dcm here.")
    ] = None,
    no_radiomics: Annotated[bool, typer.Option("--no-radiomics", help="Burden only.")] = False,
    deformable: Annotated[
        bool,
        typer.Option(
            "--deformable",
            help="With --baseline: a B-spline stage after the rigid registration (off by "
            "default, see docs/lesions.md).",
        ),
    ] = False,
) -> None:
    """Print the burden, features and provenance of a series as JSON."""
    from models.imaging import analyse_acquisition

    try:
        base = None
        if baseline is not None:
            base = analyse_acquisition(baseline, radiomics=False, peritumoural=False).as_baseline()
        result = analyse_acquisition(
            path,
            series_uid=series_uid,
            lesion_path=lesion,
            lesion_label=label,
            baseline=base,
            radiomics=not no_radiomics,
            deformable=deformable,
            output_dir=out,
        )
    except (IrtmonError, OSError) as err:
        typer.echo(json.dumps({"error": type(err).__name__, "message": str(err)}), err=True)
        raise typer.Exit(code=1) from err
    json.dump(result.to_dict(), sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
