"""Images: a CT slice through the lesion with its mask, baseline beside the chosen scan;
biopsies as the attention heat map (or the slide thumbnail)."""

from __future__ import annotations

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


def _study(a: dict) -> StudyView | None:
    path = (a["location"] or {}).get("path")
    lesion = (a["lesion"] or {}).get("path") if a["lesion"] else None
    try:
        folder = data.resolve_data_path(path)
        return data.study(str(folder), lesion)
    except (UnreadableInputError, FileNotFoundError, OSError) as err:
        st.warning(f"Cannot read this study: {err}")
        return None


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
                study = _study(scans[i])
                if study is None:
                    continue
                k = imaging.lesion_slice(study.labels, study.volume.shape[0])
                k = st.slider("Slice", 0, study.volume.shape[0] - 1, k, key=f"slice_{i}")
                labels = study.labels[k] if study.labels is not None and show_mask else None
                st.image(
                    imaging.render_slice(study.volume[k], WINDOWS[preset], labels), width="stretch"
                )
                st.caption(
                    f"series {study.series} · slice {k + 1}/{study.volume.shape[0]} · "
                    f"{study.pixel_mm:.2f} mm/px · mask from {study.label_source}"
                )

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
