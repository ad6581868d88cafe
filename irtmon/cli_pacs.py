"""``irtmon pacs`` (send studies to the PACS, write Orthanc's configuration) and
``irtmon fhir`` (scores as FHIR resources for an EHR)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from irtmon.common import console, fail, get_settings

pacs_app = typer.Typer(
    help="The hospital PACS (Orthanc): send studies, configure.", no_args_is_help=True
)
fhir_app = typer.Typer(help="Scores as FHIR R4 resources for an EHR.", no_args_is_help=True)


@pacs_app.command("send")
def pacs_send(
    paths: Annotated[list[Path], typer.Argument(help="DICOM files or folders (recursive).")],
    host: Annotated[str, typer.Option(help="PACS host.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="PACS DICOM port (default IRTMON_ORTHANC_DICOM_PORT).")
    ] = None,
    aet: Annotated[
        str | None, typer.Option(help="PACS AE title (default IRTMON_ORTHANC_AET).")
    ] = None,
    calling_aet: Annotated[
        str,
        typer.Option(
            help="Our AE title; the PACS stores only from IRTMON_ORTHANC_ALLOWED_CALLERS."
        ),
    ] = "IRTMON-SCU",
    identities: Annotated[
        Path | None,
        typer.Option(
            help="A cohort's identities.csv (clear_id, pseudonym): files whose PatientID is "
            "a pseudonym are sent with the clear identifier, as a hospital holds them (the "
            "PACS keys every PatientID). Default: the cohort's ground_truth/identities.csv "
            "above the files, when there is one.",
        ),
    ] = None,
) -> None:
    """Send DICOM files to the PACS with dcmtk's storescu, as a scanner does (C-STORE).

    SEG, RTSTRUCT and SR objects go too (storescu -R). The PACS publishes imaging.acquired
    once the study is stable, under the keyed-hash pseudonym of the PatientID.
    """
    import tempfile

    from pacs.send import (
        PseudonymisedFilesError,
        StoreError,
        find_identities,
        load_identities,
        reidentified_copies,
        send_folder,
    )

    settings = get_settings()
    table = identities or find_identities(paths)
    try:
        known = load_identities(table) if table is not None else None
    except (OSError, KeyError) as err:
        raise fail(f"cannot read the identities table {table}: {err}") from err
    with tempfile.TemporaryDirectory(prefix="irtmon-send-") as tmp:
        try:
            to_send, changed = reidentified_copies(paths, known, Path(tmp))
            if changed:
                console.print(f"{changed} files sent with clear identifiers from {table}")
            count = send_folder(
                to_send,
                host,
                port or settings.orthanc_dicom_port,
                aet or settings.orthanc_aet,
                calling_aet=calling_aet,
            )
        except (StoreError, PseudonymisedFilesError, OSError, ValueError) as err:
            raise fail(str(err)) from err
    console.print(f"sent {count} DICOM files to {aet or settings.orthanc_aet}@{host}")


@pacs_app.command("config")
def pacs_config(
    out: Annotated[Path, typer.Option(help="Where to write Orthanc's JSON configuration.")],
    storage: Annotated[Path, typer.Option(help="Orthanc's storage folder.")] = Path(
        "/var/lib/orthanc/db"
    ),
    plugin_dir: Annotated[
        Path, typer.Option(help="Folder of libOrthancPython.so and libOrthancDicomWeb.so.")
    ] = Path("/usr/share/orthanc/plugins"),
    remote_access: Annotated[
        bool, typer.Option(help="Accept HTTP from other hosts (in a container network).")
    ] = False,
) -> None:
    """Write the Orthanc configuration irtmon runs with (ports, AE title and allowed callers,
    REST authentication, DICOMweb, plugin).

    `irtmon stack up --with-pacs` writes the same for its loopback Orthanc; the compose
    file's Orthanc service runs this before starting Orthanc.
    """
    from irtmon.stack.orthanc import write_config

    try:
        path = write_config(
            get_settings(),
            out,
            storage=storage,
            plugin_dir=plugin_dir,
            remote_access=remote_access,
        )
    except ValueError as err:
        raise fail(str(err)) from err
    console.print(f"wrote {path} (readable by its owner only: it holds the REST password)")


@fhir_app.command("export")
def fhir_export(
    patient: Annotated[str, typer.Option(help="The patient's pseudonym (psn-...).")],
    score: Annotated[
        list[str] | None, typer.Option(help="Only these score names (repeatable).")
    ] = None,
    lesions: Annotated[
        bool,
        typer.Option(
            "--lesions/--no-lesions",
            help="Add every tracked lesion, grouped per scan (default: with all scores).",
        ),
    ] = True,
    out: Annotated[
        Path | None, typer.Option(help="Write the Bundle here (default: standard output).")
    ] = None,
) -> None:
    """A FHIR Bundle of a patient's stored scores: a RiskAssessment per probability, an
    Observation per other score (any score name), each with its model name and version; and
    per scan a group Observation (RECIST 1.1, iRECIST, sums) whose members are one Observation
    per tracked lesion (tracking id, body site, RECIST role, long and short axis, volume)."""
    from core.db import connect
    from core.db import lesions as lesion_rows
    from core.db.scores import patient_scores
    from schemas.fhir import bundle, lesion_observations
    from schemas.pseudonym import is_pseudonym

    if not is_pseudonym(patient):
        raise fail(f"{patient!r} is not a pseudonym (psn- and 16 hex digits)")
    observations = []
    with connect(get_settings(), autocommit=True) as conn:
        scores = patient_scores(conn, patient, score or None)
        if lesions and not score:
            by_source: dict = {}
            for row in lesion_rows.patient_lesions(conn, patient, cohorts=None):
                by_source.setdefault(row["source_event_id"], []).append(row)
            for assessment in lesion_rows.patient_assessments(conn, patient, cohorts=None):
                members = by_source.get(assessment["source_event_id"], [])
                observations += lesion_observations(patient, assessment, members)
    if not scores and not observations:
        raise fail(f"no stored scores for {patient}")
    text = json.dumps(json.loads(bundle(scores, observations).model_dump_json()), indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n")
        console.print(f"wrote {len(scores) + len(observations)} resources to {out}")
