"""irtmon's Orthanc Python plugin: a study that turns stable is published as imaging.acquired.

Orthanc loads this file (``PythonScript`` in its configuration) into the Python it embeds,
Debian's system Python 3.11, not irtmon's virtual environment: the configuration's
``Irtmon.PythonPaths`` (written by :func:`irtmon.stack.orthanc.orthanc_config`) puts the
environment's site-packages and the source tree on ``sys.path``. Settings come from the
``IRTMON_*`` environment Orthanc was started with (broker, pseudonym key, DICOMweb address).
Every PatientID is replaced by its keyed-hash pseudonym, whatever it looks like.

Consumes: Orthanc's ``STABLE_STUDY`` changes (one event per study: a PCCT study is several
series that belong together, and its contours come as series of their own)
Produces: ``imaging.acquired`` (ImagingAcquired with a DICOMweb location), keyed by pseudonym
Side effects: none in Orthanc. The callback runs inside Orthanc's core, so it only queues the
study id; a thread reads the series headers over the plugin REST API and publishes.
"""

from __future__ import annotations

import json
import queue
import site
import sys
import threading
import time

import orthanc  # provided by Orthanc's Python plugin

_CONFIG = json.loads(orthanc.GetConfiguration()).get("Irtmon", {})
for _path in _CONFIG.get("PythonPaths", []):
    site.addsitedir(_path)  # processes .pth files (editable installs) too
    if _path not in sys.path:
        sys.path.append(_path)

_QUEUE: queue.Queue[str | None] = queue.Queue()
_STOP = object()


def _get(uri: str) -> dict:
    return json.loads(orthanc.RestApiGet(uri))


def _series_headers(study_id: str) -> tuple[str, str, list]:
    """Patient ID, study UID and, per series of an Orthanc study, one header (no pixels) and
    the SOP Instance UIDs of all its instances."""
    from io import BytesIO

    import pydicom

    from pacs.study import SeriesHeader

    study = _get(f"/studies/{study_id}")
    patient_id = study.get("PatientMainDicomTags", {}).get("PatientID", "")
    study_uid = study["MainDicomTags"]["StudyInstanceUID"]
    headers = []
    for series_id in study.get("Series", []):
        series = _get(f"/series/{series_id}")
        if not series.get("Instances"):
            continue
        raw = orthanc.RestApiGet(f"/instances/{series['Instances'][0]}/file")
        header = pydicom.dcmread(BytesIO(raw), stop_before_pixels=True)
        instances = json.loads(orthanc.RestApiGet(f"/series/{series_id}/instances"))
        headers.append(
            SeriesHeader(
                series_uid=series["MainDicomTags"]["SeriesInstanceUID"],
                modality=str(series["MainDicomTags"].get("Modality", "")),
                header=header,
                instance_uids=tuple(
                    sorted(str(i["MainDicomTags"]["SOPInstanceUID"]) for i in instances)
                ),
            )
        )
    return patient_id, study_uid, headers


def _run() -> None:
    """Publish each queued study; never let one bad study stop the thread."""
    from core.publish import Publisher
    from core.settings import Settings
    from pacs.study import NotAnAcquisitionError, acquisition_event

    settings = Settings()
    if settings.pseudonym_key is None:
        orthanc.LogError("irtmon: IRTMON_PSEUDONYM_KEY is not set; no study will be published")
    key = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else ""
    publisher = None
    published: set[str] = set()
    while True:
        study_id = _QUEUE.get()
        if study_id is None:
            break
        try:
            patient_id, study_uid, headers = _series_headers(study_id)
            event = acquisition_event(patient_id, study_uid, headers, settings.dicomweb_url, key)
        except NotAnAcquisitionError as err:
            orthanc.LogInfo(f"irtmon: study {study_id} not published: {err}")
            continue
        except Exception as err:  # a bad study is logged (never its headers), the rest go on
            orthanc.LogError(f"irtmon: study {study_id} not published: {type(err).__name__}: {err}")
            continue
        if str(event.event_id) in published:
            continue  # stable again with the same instances (irtmon's SEG/SR stored into it)
        for attempt in range(1, 7):
            try:
                if publisher is None:
                    publisher = Publisher(settings, client_id="irtmon-orthanc")
                publisher.publish([event])
                published.add(str(event.event_id))
                orthanc.LogWarning(
                    f"irtmon: published imaging.acquired {event.event_id} ({event.modality}, "
                    f"{len(event.series_uids)} series) for Orthanc study {study_id}"
                )
                break
            except Exception as err:  # broker down: retry with back-off, then give up loudly
                orthanc.LogWarning(f"irtmon: publishing failed (attempt {attempt}): {err}")
                publisher = None
                time.sleep(min(30, 2**attempt))
        else:
            orthanc.LogError(f"irtmon: study {study_id} could not be published; resend it")


_THREAD = threading.Thread(target=_run, name="irtmon-publisher", daemon=True)
_THREAD.start()


def on_change(change_type: int, level: int, resource_id: str) -> None:
    """Runs inside Orthanc's core: only queue the work."""
    if change_type == orthanc.ChangeType.STABLE_STUDY:
        _QUEUE.put(resource_id)
    elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
        _QUEUE.put(None)


orthanc.RegisterOnChangeCallback(on_change)
