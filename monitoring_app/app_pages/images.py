"""Images: a CT slice with every tracked lesion outlined and named by its tracking id (in the
radiotherapy field: warm colours; outside it: cool), baseline beside the chosen scan; biopsies
as the attention heat map (or the slide thumbnail)."""

from __future__ import annotations

import contextlib

import numpy as np
import streamlit as st

from models.exceptions import UnreadableInputError
from models.imaging.study_view import StudyView
from monitoring_app import data, imaging, ui
from monitoring_app.vocab import WINDOWS

user = ui.user()
st.title("Images")
patient = ui.pick_patient(user, key="images_patient")
if patient is None:
    st.stop()
if data.patient(data.dsn(), patient, user.cohorts) is None:
    st.error("This patient is outside your cohorts.")
    st.stop()

acqs = data.acquisitions(data.dsn(), patient, user.cohorts)
scans = [a for a in acqs if a["kind"] == "imaging"]
biopsies = [a for a in acqs if a["kind"] == "biopsy"]
tab_ct, tab_slide = st.tabs([f"CT ({len(scans)} scans)", f"Biopsies ({len(biopsies)})"])


def _label(a: dict) -> str:
    return f"{ui.day(a['acquired_at'])} · {a['modality']} · {a['purpose'] or ''}".rstrip(" ·")


def _annotations(a: dict, outputs: dict) -> tuple[str, ...]:
    """irtmon's own lesion SEG of the scan (named by tracking id), then the reader's."""
    found = []
    seg = (outputs.get("seg") or {}).get("path")
    if seg:
        with contextlib.suppress(UnreadableInputError, OSError):
            found.append(str(data.resolve_derived_path(seg)))
    reader = (a["lesion"] or {}).get("path") if a["lesion"] else None
    if reader:
        with contextlib.suppress(UnreadableInputError, OSError):
            found.append(str(data.resolve_data_path(reader)))
    return tuple(found)


def _study(a: dict, annotations: tuple[str, ...] = ()) -> StudyView | None:
    path = (a["location"] or {}).get("path")
    lesion = (a["lesion"] or {}).get("path") if a["lesion"] else None
    try:
        folder = data.resolve_data_path(path)
        return data.study(str(folder), lesion, annotations)
    except (UnreadableInputError, FileNotFoundError, OSError) as err:
        st.warning(f"Cannot read this study: {err}")
        return None


def _named_outlines(study: StudyView, rows: list[dict]) -> tuple[np.ndarray | None, list[dict]]:
    """One label per tracked lesion drawn in the study (1, 2, ...), and its row."""
    by_uid = {r["tracking_uid"]: r for r in rows}
    by_ref = {(r["reference_uid"], r["segment_number"]): r for r in rows if r["reference_uid"]}
    if not study.outlines:
        return None, []
    labels = np.zeros(study.volume.shape, np.int32)
    shown = []
    for o in study.outlines:
        row = by_uid.get(o.tracking_uid) or by_ref.get((o.reference_uid, o.number))
        if row is None or o.mask.shape != labels.shape:
            continue
        shown.append(row)
        labels[o.mask & (labels == 0)] = len(shown)
    return (labels if shown else None), shown


with tab_ct:
    if not scans:
        st.info("No scan stored for this patient.")
    else:
        c1, c2 = st.columns([2, 3])
        idx = c1.selectbox(
            "Timepoint",
            range(len(scans)),
            index=len(scans) - 1,
            format_func=lambda i: _label(scans[i]),
            key="images_tp",
        )
        preset = (
            c2.segmented_control("Window", list(WINDOWS), default="Lung", key="images_window")
            or "Lung"
        )
        show_mask = c2.toggle("Show lesion masks", value=True, key="images_mask")
        pair = [(0, "Baseline"), (idx, "Selected")] if idx != 0 else [(0, "Baseline")]
        cols = st.columns(2)
        for col, (i, title) in zip(cols, pair, strict=False):
            with col:
                st.markdown(f"**{title}** — {_label(scans[i])}")
                rows, outputs = data.scan_lesions(
                    data.dsn(), patient, str(scans[i]["event_id"]), user.cohorts
                )
                study = _study(scans[i], _annotations(scans[i], outputs) if rows else ())
                if study is None:
                    continue
                labels3d, shown = _named_outlines(study, rows) if rows else (None, [])
                if labels3d is None:  # no tracked lesion to name: the study's own labels
                    k = imaging.lesion_slice(study.labels, study.volume.shape[0])
                    k = st.slider("Slice", 0, study.volume.shape[0] - 1, k, key=f"slice_{i}")
                    labels = study.labels[k] if study.labels is not None and show_mask else None
                    st.image(
                        imaging.render_slice(study.volume[k], WINDOWS[preset], labels),
                        width="stretch",
                    )
                    st.caption(
                        f"series {study.series} · slice {k + 1}/{study.volume.shape[0]} · "
                        f"{study.pixel_mm:.2f} mm/px · mask from {study.label_source}"
                    )
                    continue
                ids = [r["tracking_id"] for r in shown]
                pick = st.selectbox(
                    "Lesion",
                    range(len(shown)),
                    format_func=lambda j, shown=shown: (
                        f"{shown[j]['tracking_id']} · {str(shown[j]['organ']).replace('_', ' ')}"
                        f" · {'in field' if shown[j]['in_field'] else 'out of field'}"
                    ),
                    key=f"lesion_{i}",
                    help="Go to the slice where this lesion is largest.",
                )
                k = imaging.lesion_slice_of(labels3d == pick + 1)
                k = st.slider(
                    "Slice", 0, study.volume.shape[0] - 1, k, key=f"slice_{i}_{ids[pick]}"
                )
                colours = imaging.lesion_colours([r["in_field"] for r in shown])
                here = sorted({int(v) for v in np.unique(labels3d[k]) if v})
                st.image(
                    imaging.render_slice(
                        study.volume[k],
                        WINDOWS[preset],
                        labels3d[k] if show_mask else None,
                        colours={j + 1: c for j, c in enumerate(colours)},
                        names={j + 1: r["tracking_id"] for j, r in enumerate(shown)},
                    ),
                    width="stretch",
                )
                source = study.outlines[0].source if study.outlines else ""
                on_slice = ", ".join(ids[v - 1] for v in here) or "none"
                st.caption(
                    f"series {study.series} · slice {k + 1}/{study.volume.shape[0]} · "
                    f"{study.pixel_mm:.2f} mm/px · outlines from {source} · "
                    f"on this slice: {on_slice} · {len(shown)} lesions outlined "
                    "(warm: in the radiotherapy field; cool: outside it)"
                )
                missing = [r["tracking_id"] for r in rows if r["status"] != "seen"]
                if missing:
                    st.caption("not outlined (not seen or not evaluable): " + ", ".join(missing))

with tab_slide:
    if not biopsies:
        st.info("No biopsy stored for this patient.")
    else:
        j = st.selectbox(
            "Biopsy",
            range(len(biopsies)),
            format_func=lambda i: (
                f"{ui.day(biopsies[i]['acquired_at'])} · {biopsies[i]['specimen_id']}"
            ),
            key="images_biopsy",
        )
        slides = biopsies[j]["location"] or []
        for s in slides if isinstance(slides, list) else []:
            try:
                path = data.resolve_data_path(s["path"])
                image, what = data.slide_view(str(path), ())
            except (UnreadableInputError, FileNotFoundError, OSError) as err:
                st.warning(f"Cannot read slide {s.get('slide_id')}: {err}")
                continue
            st.image(image, caption=f"{s.get('slide_id')} · {what}", width=640)
