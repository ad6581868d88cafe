"""The hospital path on real parts: storescu -> Orthanc -> plugin -> Kafka -> worker -> database,
and the SEG and SR back in Orthanc (STOW-RS).

A virtual-clinic patient's planning CT (with its RTSTRUCT and SEG) and a PCCT follow-up (VMIs
and an iodine map, no contour) are sent with dcmtk's storescu to a loopback Orthanc started by
``stack up --with-pacs``'s code. Their PatientID is first set to a clear hospital identifier, so
the test also shows that only its keyed-hash pseudonym leaves the PACS. The worker fetches each
study over DICOMweb (the follow-up's lesion is propagated from the planning CT, fetched over
DICOMweb too), stores the scores and writes the SEG and SR back.

The trust boundaries of the PACS on the same Orthanc: only allowed callers (AE title and
address) may store, and only to irtmon's AE title; every PatientID is keyed, also one shaped
like a pseudonym; free text of the headers stays out of the events and the logs; instances that
arrive after a study was stable make a new event; the REST API and DICOMweb need credentials.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pydicom
import pytest
from kafka import KafkaConsumer
from pydicom.uid import generate_uid

from core.settings import Settings
from irtmon import stack
from irtmon.stack import orthanc
from irtmon.stack.private import free_port, settings_env
from pacs.send import StoreError, send_folder
from schemas import ImagingAcquired, parse_event, pseudonymise
from streams import fetched
from tests.conftest import REPO
from tests.integration.conftest import Workers, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path("/usr/sbin/Orthanc").exists() and Path("/usr/bin/storescu").exists()),
        reason="needs Debian's orthanc, orthanc-python, orthanc-dicomweb and dcmtk "
        "(scripts/bootstrap.sh installs them)",
    ),
]

CLEAR_ID = "HOSP-4711-0815"
KEY = "pacs-test-key-0123456789abcdef"
PACS_PASSWORD = "pacs-rest-password-0123456789"
SCANNER_2 = "SCANNER-2@10.255.0.1"  # allowed, but from another address than this machine's


@pytest.fixture(scope="module")
def pacs(settings: Settings, stack_dir: Path) -> Iterator[Settings]:
    """The session stack plus a loopback Orthanc with irtmon's plugin, on free ports."""
    s = settings.model_copy(
        update={
            "orthanc_http_port": free_port(),
            "orthanc_dicom_port": free_port(),
            "orthanc_stable_age_s": 2,
            "pseudonym_key": KEY,
            "pacs_password": PACS_PASSWORD,
            "orthanc_allowed_callers": ["IRTMON-SCU@127.0.0.1", SCANNER_2],
            "derived_dir": stack_dir / "pacs-derived",
        }
    )
    s = Settings(**{k: v for k, v in s.model_dump().items() if v is not None})  # validated
    status = stack.up(s, with_pacs=True)
    assert status.pacs is not None and status.pacs.running
    yield s
    orthanc.stop(s)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> dict[str, Path]:
    """One virtual-clinic patient's planning CT and first PCCT follow-up, re-identified with a
    clear hospital PatientID (as a real PACS holds them)."""
    from clinic import generate_cohort

    cohort = Path(settings.data_roots[0]) / "cohort-pacs-seed21"
    if not (cohort / "events.jsonl").exists():
        generate_cohort(cohort, 1, 21, "test", key="pacs-cohort-key-0123456789abcdef")
    patient = next((cohort / "patients").iterdir())
    planning = patient / "tp0-planning"
    pcct = next(
        d
        for d in sorted(patient.iterdir())
        if d.name.startswith("tp") and any(c.name.startswith("VMI") for c in d.iterdir())
    )
    out = tmp_path_factory.mktemp("hospital")
    copies = {}
    for name, folder in (("ct", planning), ("pcct", pcct)):
        for path in folder.rglob("*.dcm"):
            ds = pydicom.dcmread(path)
            ds.PatientID = CLEAR_ID
            ds.PatientName = "Doe^Jane"
            target = out / name / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(target, enforce_file_format=True)
        copies[name] = out / name
    return copies


def _study_uid(folder: Path) -> str:
    return str(
        pydicom.dcmread(next(folder.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    )


def _scored(dsn: str, study_uid: str) -> dict | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            """
            SELECT a.event_id, a.patient, a.modality, a.status, f.provenance
            FROM acquisitions a
            LEFT JOIN acquisition_features f ON f.source_event_id = a.event_id
            WHERE a.study_uid = %s AND a.location->>'kind' = 'dicomweb'
            """,
            (study_uid,),
        ).fetchone()
        if row is None or row[3] != "scored":
            return None
        scores = dict(
            conn.execute(
                "SELECT score_name, value FROM timepoint_scores WHERE source_event_id = %s",
                (row[0],),
            ).fetchall()
        )
    return {"patient": row[1], "modality": row[2], "provenance": row[4], "scores": scores}


def _lookup(pacs: Settings, uid: str) -> list[dict]:
    request = urllib.request.Request(
        f"{pacs.pacs_http}/tools/lookup",
        data=uid.encode(),
        method="POST",
        headers=pacs.pacs_headers(),
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _in_orthanc(pacs: Settings, sop_instance_uid: str) -> bool:
    return any(item["Type"] == "Instance" for item in _lookup(pacs, sop_instance_uid))


def _qido_modalities(pacs: Settings, study_uid: str) -> set[str]:
    url = f"{pacs.dicomweb_url}/studies/{study_uid}/series"
    request = urllib.request.Request(url, headers=pacs.pacs_headers())
    with urllib.request.urlopen(request, timeout=10) as response:
        return {s["00080060"]["Value"][0] for s in json.loads(response.read())}


def test_storescu_to_orthanc_to_scores_and_back(
    pacs: Settings, studies: dict[str, Path], workers: Workers, settings: Settings
) -> None:
    workers.start(
        derived_dir=pacs.derived_dir,
        pseudonym_key=KEY,
        orthanc_http_port=pacs.orthanc_http_port,  # the PACS the workers may fetch from
        pacs_password=PACS_PASSWORD,
    )
    expected_patient = pseudonymise(CLEAR_ID, KEY)
    results = {}
    for name in ("ct", "pcct"):  # the planning CT first: the follow-up's baseline
        assert send_folder([studies[name]], "127.0.0.1", pacs.orthanc_dicom_port, pacs.orthanc_aet)
        study_uid = _study_uid(studies[name])
        wait_for(
            lambda uid=study_uid: _scored(settings.dsn, uid) is not None,
            timeout=240,
            what=f"the {name} study scored through Orthanc",
        )
        results[name] = (study_uid, _scored(settings.dsn, study_uid))
        if name == "ct":
            # housekeeping deletes the local copy of the planning CT (as after the retention
            # period): the follow-up must fetch its baseline again from the PACS
            pruned = fetched.prune(pacs.derived_dir, 0.0, now=time.time() + 60)
            ct_copy = [f for f in pruned if f.parent.name == study_uid]
            assert len(ct_copy) == 1 and not ct_copy[0].exists()

    for name, (study_uid, result) in results.items():
        assert result["patient"] == expected_patient  # pseudonymised at the PACS
        assert {"tumour_volume_ml", "longest_diameter_mm"} <= set(result["scores"])
        assert result["scores"]["tumour_volume_ml"] > 1.0
        outputs = result["provenance"]["dicom_outputs"]
        assert outputs["stored_to"] == pacs.dicomweb_url
        for kind in ("seg", "sr"):  # in the database and back in Orthanc
            assert _in_orthanc(pacs, outputs[kind]["sop_instance_uid"]), (name, kind)
        assert {"SEG", "SR"} <= _qido_modalities(pacs, study_uid)
    assert results["ct"][1]["modality"] == "CT"
    assert results["pcct"][1]["modality"] == "PCCT"
    assert results["pcct"][1]["provenance"]["multi_energy"] is True
    assert results["pcct"][1]["provenance"]["mask_source"] == "propagated"  # from the CT
    assert ct_copy[0].is_dir()  # fetched again for that
    assert any(k.startswith("spec_") for k in _features(settings.dsn, results["pcct"][0]))

    # the clear identifier never reached the topic
    consumer = KafkaConsumer(
        "imaging.acquired",
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    payloads = [m.value for m in consumer]
    consumer.close()
    ours = [p for p in payloads if expected_patient.encode() in p]
    assert len(ours) == 2
    assert not any(CLEAR_ID.encode() in p for p in payloads)
    assert not any(b"Doe" in p for p in ours)  # other tests publish deliberately bad names

    # the scores as FHIR for an EHR
    export = subprocess.run(
        [sys.executable, "-m", "irtmon", "fhir", "export", "--patient", expected_patient],
        env=settings_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert export.returncode == 0, export.stderr[-2000:]
    bundle = json.loads(export.stdout)
    assert bundle["resourceType"] == "Bundle"
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert "Observation" in kinds
    assert CLEAR_ID not in export.stdout


def _features(dsn: str, study_uid: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            """
            SELECT f.features FROM acquisition_features f
            JOIN acquisitions a ON a.event_id = f.source_event_id
            WHERE a.study_uid = %s AND a.location->>'kind' = 'dicomweb'
            """,
            (study_uid,),
        ).fetchone()
    return row[0] if row else {}


# ----------------------------------------------------------------------------- boundaries


def _small_study(
    studies: dict[str, Path], out: Path, patient_id: str, slices: int, **tags: str
) -> list[Path]:
    """``slices`` CT slices of the planning CT as a new study of ``patient_id`` (new UIDs),
    with ``tags`` set; the files, in slice order."""
    source = sorted(
        (
            p
            for p in studies["ct"].rglob("*.dcm")
            if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT"
        ),
        key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]),
    )
    middle = len(source) // 2
    chosen = source[middle - slices // 2 : middle - slices // 2 + slices]
    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for i, path in enumerate(chosen):
        ds = pydicom.dcmread(path)
        ds.PatientID = patient_id
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for name, value in tags.items():
            setattr(ds, name, value)
        target = out / f"{i:03d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
        files.append(target)
    return files


def _published(settings: Settings, study_uid: str) -> list[tuple[bytes, ImagingAcquired]]:
    """The imaging.acquired events (raw and parsed) published for ``study_uid`` so far."""
    consumer = KafkaConsumer(
        "imaging.acquired",
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
        **settings.kafka_client_config(),
    )
    found = []
    for message in consumer:
        if study_uid.encode() in message.value:
            event = parse_event(ImagingAcquired, message.value)
            assert isinstance(event, ImagingAcquired)
            found.append((message.value, event))
    consumer.close()
    return found


def test_only_allowed_callers_store_and_only_to_irtmon_aet(
    pacs: Settings, studies: dict[str, Path], settings: Settings, tmp_path: Path
) -> None:
    files = _small_study(studies, tmp_path / "s", "ALLOWLIST-0001", 3)
    study_uid = _study_uid(tmp_path / "s")
    port = pacs.orthanc_dicom_port
    refused = [
        (
            "an unknown AE title",
            "EVIL-SCANNER",
            pacs.orthanc_aet,
            "Calling AE Title Not Recognized",
        ),
        ("an allowed AE title from another address", "SCANNER-2", pacs.orthanc_aet, "Rejected"),
        ("another called AE title", "IRTMON-SCU", "NOT-IRTMON", "Called AE Title Not Recognized"),
    ]
    for what, calling, called, reason in refused:
        with pytest.raises(StoreError, match=reason):
            send_folder(files, "127.0.0.1", port, called, calling_aet=calling)
        assert _lookup(pacs, study_uid) == [], what
    time.sleep(pacs.orthanc_stable_age_s + 3)
    assert _published(settings, study_uid) == []  # nothing stored, nothing published
    assert send_folder(files, "127.0.0.1", port, pacs.orthanc_aet, calling_aet="IRTMON-SCU") == 3
    wait_for(lambda: len(_published(settings, study_uid)) == 1, 60, "the allowed study published")
    log = orthanc.paths(pacs).log.read_text(errors="replace")
    assert "Rejected association for remote AET EVIL-SCANNER" in log


def test_a_patient_id_shaped_like_a_pseudonym_is_keyed_and_free_text_stays_out(
    pacs: Settings, studies: dict[str, Path], settings: Settings, tmp_path: Path
) -> None:
    forged = "psn-00000000deadbeef"
    _small_study(
        studies,
        tmp_path / "s",
        forged,
        3,
        StudyDescription="CT thorax Jane Roe",
        SeriesDescription="Roe^Jane 2mm",
        PatientName="Roe^Jane",
    )
    study_uid = _study_uid(tmp_path / "s")
    send_folder([tmp_path / "s"], "127.0.0.1", pacs.orthanc_dicom_port, pacs.orthanc_aet)
    wait_for(lambda: len(_published(settings, study_uid)) == 1, 60, "the study published")
    [(raw, event)] = _published(settings, study_uid)
    assert event.patient == pseudonymise(forged, KEY) != forged
    assert forged.encode() not in raw
    assert event.description is None
    for word in (b"Jane", b"Roe", b"thorax"):
        assert word not in raw, word
    log = orthanc.paths(pacs).log.read_text(errors="replace")
    assert "Jane" not in log and "Roe" not in log and forged not in log


def test_instances_after_the_study_was_stable_make_a_new_event(
    pacs: Settings, studies: dict[str, Path], settings: Settings, tmp_path: Path
) -> None:
    files = _small_study(studies, tmp_path / "s", "LATE-0001", 6)
    study_uid = _study_uid(tmp_path / "s")
    send_folder(files[:3], "127.0.0.1", pacs.orthanc_dicom_port, pacs.orthanc_aet)
    wait_for(lambda: len(_published(settings, study_uid)) == 1, 60, "the first three slices")
    send_folder(files[3:], "127.0.0.1", pacs.orthanc_dicom_port, pacs.orthanc_aet)
    wait_for(lambda: len(_published(settings, study_uid)) == 2, 60, "the study with six slices")
    (_, first), (_, second) = _published(settings, study_uid)
    assert first.event_id != second.event_id  # not taken for a redelivery: scored again
    assert first.series_uids == second.series_uids and first.patient == second.patient
    # the worker fetches each event's study into a folder of its own: all six slices
    from streams.scoring import fetched_study_dir

    assert fetched_study_dir(pacs.derived_dir, study_uid, first.event_id) != fetched_study_dir(
        pacs.derived_dir, study_uid, second.event_id
    )
    # stable again with nothing new: no third event
    time.sleep(pacs.orthanc_stable_age_s + 3)
    assert len(_published(settings, study_uid)) == 2


def test_the_rest_api_and_dicomweb_need_credentials(pacs: Settings) -> None:
    for url in (f"{pacs.pacs_http}/studies", f"{pacs.dicomweb_url}/studies"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401, url
        wrong = urllib.request.Request(
            url,
            headers=pacs.model_copy(update={"pacs_password": None}).pacs_headers()
            | {"Authorization": "Basic aXJ0bW9uOndyb25n"},  # irtmon:wrong
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, timeout=10)
        assert refused.value.code == 401, url
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=pacs.pacs_headers()), timeout=10
        ) as response:
            assert response.status == 200
    config = orthanc.paths(pacs).config
    assert config.stat().st_mode & 0o077 == 0  # the password in it: owner only
