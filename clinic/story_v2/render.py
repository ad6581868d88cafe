"""Render one axial slice of a story-v2 patient: organs, lesions, and the lung after SBRT.

The output is :class:`clinic.phantom.SliceComponents` (so the CT, every virtual monoenergetic
image and the iodine map come from the same anatomy through :func:`clinic.phantom.hounsfield`)
plus, per lesion, its partial-volume fraction (for RTSTRUCT contours) and the dense part of the
radiation change around it (for a reader who draws it into the lesion). Organs added to the
story-v1 thorax: a liver under the right lung base, adrenal glands beside the spine, a heart
that ends at the diaphragm, and lungs that narrow towards their bases.

What a lesion looks like follows that lesion's current immune state through the CT's noisy
reading (:func:`clinic.story_v2.course.ct_reading`): texture amplitude, rim and core iodine;
its necrotic core is drawn independently of the immune state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clinic.phantom import (
    Geometry,
    LesionPattern,
    SliceComponents,
    SliceGrid,
    blend_lesion,
    ellipse,
    ellipsoid_fraction,
    paint_aorta_and_spine,
    pixel_window,
    slice_grid,
    trunk,
)
from clinic.story import Pose
from clinic.story_v2 import params
from clinic.story_v2.anatomy import (
    ADRENAL_SEMI_AXES_MM,
    HEART_Z_RANGE_MM,
    LIVER_CENTRE_MM,
    LIVER_SEMI_AXES_MM,
    adrenal_centres_mm,
    lung_scale,
)
from clinic.story_v2.patient import PatientV2

_LUNG_HU = -860.0


class LesionLook(LesionPattern):
    """A lesion's texture pattern (fixed in its own frame) and, per scan, how strong it is.

    The enhancement and texture gains map the CT reading (unit variance after scaling) to
    HU and mg/ml as story v1 did (assumption: rendering constants); ``enhancement`` scales the
    iodine (liver metastases are drawn at half, so that they stand out dark against the
    enhancing liver, as hypovascular metastases do in the portal-venous phase).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        reading: float,
        necrosis: float,
        enhancement: float = 1.0,
    ) -> None:
        z = reading / math.sqrt(1.0 + params.CT_NOISE_SD**2)
        super().__init__(
            rng,
            heterogeneity=float(np.clip(12.0 + 5.0 * z, 3.0, 30.0)),
            rim=enhancement * float(np.clip(0.6 + 0.4 * z, 0.0, 3.0)),
            core=enhancement * float(np.clip(1.5 + 0.3 * z, 0.3, 3.0)),
            necrosis=necrosis,
        )


@dataclass(frozen=True)
class LesionDraw:
    """One lesion as drawn at one scan (scanner frame)."""

    track: int
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    angle_deg: float  # in the scanner frame (lesion angle + the patient's yaw)
    look: LesionLook
    rt_severity: float = 0.0  # lung change around it, 0..1
    rt_semi_axes_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rt_peak_hu: float = 0.0
    rt_look: LesionLook | None = None


@dataclass
class RenderedSlice:
    """A slice's material components, per-lesion fractions and dense radiation changes."""

    components: SliceComponents
    fractions: dict[int, tuple[tuple[slice, slice], np.ndarray]]
    rt_dense: dict[int, np.ndarray]  # full-slice boolean masks


def _section(
    centre: tuple[float, float, float], semi: tuple[float, float, float], z: float
) -> tuple[float, float] | None:
    """Axial semi-axes of an axis-aligned ellipsoid's section at height ``z``."""
    t = (z - centre[2]) / semi[2]
    if abs(t) >= 1.0:
        return None
    s = math.sqrt(1.0 - t * t)
    return semi[0] * s, semi[1] * s


def _organs(
    patient: PatientV2, grid: SliceGrid
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(soft, fat, bone, iodine, lung mask) of the organs on a slice."""
    an = patient.anatomy
    px, py, pz = grid.px, grid.py, grid.z_patient
    soft, fat, bone, iodine = trunk(an, grid)

    lung = np.zeros(px.shape, dtype=bool)
    scale = lung_scale(pz)
    la, lb = an.lung_semi_axes_mm
    if scale > 0.0:
        for side in (-1.0, 1.0):
            lung |= ellipse(px, py, side * an.lung_offset_x_mm, -10.0, la * scale, lb * scale)
    soft[lung] = _LUNG_HU
    iodine[lung] = 0.0

    section = _section(LIVER_CENTRE_MM, LIVER_SEMI_AXES_MM, pz)
    if section is not None:
        liver = ellipse(px, py, LIVER_CENTRE_MM[0], LIVER_CENTRE_MM[1], *section)
        soft[liver] = 55.0
        iodine[liver] = 1.2  # portal-venous enhancement (assumption: rendering constant)
        lung &= ~liver
    if HEART_Z_RANGE_MM[0] < pz < HEART_Z_RANGE_MM[1]:
        heart = ellipse(px, py, 5.0, -25.0, 38.0, 42.0)
        soft[heart] = 40.0
        iodine[heart] = 4.5
        lung &= ~heart
    lung &= ~paint_aorta_and_spine(an, grid, soft, iodine, bone)
    for centre in adrenal_centres_mm(an):
        sec = _section(centre, ADRENAL_SEMI_AXES_MM, pz)
        if sec is not None:
            gland = ellipse(px, py, centre[0], centre[1], *sec)
            soft[gland] = 40.0
            iodine[gland] = 1.0
            lung &= ~gland
    return soft, fat, bone, iodine, lung


def _rt_change(
    draw: LesionDraw, g: Geometry, zs: float, soft: np.ndarray, iodine: np.ndarray, lung: np.ndarray
) -> np.ndarray | None:
    """Paint the lung change around an irradiated lesion; return where it is dense."""
    a, b, c = draw.rt_semi_axes_mm
    cx, cy, cz = draw.centre_mm
    if draw.rt_severity <= 0.0 or abs(zs - cz) > c or draw.rt_look is None:
        return None
    win = pixel_window(g, cx, cy, max(a, b) + g.pixel_mm)
    if win is None:
        return None
    rows, cols = win
    xs, ys = g.x_mm(), g.y_mm()
    yy, xx = np.meshgrid(ys[rows] - cy, xs[cols] - cx, indexing="ij")
    theta = math.radians(draw.angle_deg)
    ct, st = math.cos(theta), math.sin(theta)
    u = (ct * xx + st * yy) / a
    v = (-st * xx + ct * yy) / b
    w = np.full_like(u, (zs - cz) / c)
    rho = np.sqrt(u * u + v * v + w * w)
    weight = np.clip((1.0 - rho) / 0.35, 0.0, 1.0)
    tex = draw.rt_look.noise(u, v, w)
    here = lung[win] & (weight > 0.0)
    strength = draw.rt_severity * weight * np.clip(0.75 + 0.25 * tex, 0.0, 1.0)
    rise = (draw.rt_peak_hu - _LUNG_HU) * strength
    patch = soft[win]
    patch[here] = (_LUNG_HU + rise)[here]
    iodine[win][here] = (0.3 * draw.rt_severity * weight)[here]
    dense = np.zeros(soft.shape, dtype=bool)
    dense[win] = here & (patch > -300.0)
    return dense


def render_slice(
    patient: PatientV2,
    pose: Pose,
    geometry: Geometry,
    k: int,
    draws: list[LesionDraw],
    supersample: int = 3,
) -> RenderedSlice:
    """Material components of slice ``k`` of ``patient`` scanned in ``pose``."""
    grid = slice_grid(geometry, k, pose)
    zs = grid.z_scanner
    soft, fat, bone, iodine, lung = _organs(patient, grid)

    rt_dense: dict[int, np.ndarray] = {}
    for draw in draws:
        dense = _rt_change(draw, geometry, zs, soft, iodine, lung)
        if dense is not None:
            rt_dense[draw.track] = dense

    shape = grid.sx.shape
    labels = np.zeros(shape, dtype=np.uint8)
    fractions: dict[int, tuple[tuple[slice, slice], np.ndarray]] = {}
    for draw in draws:
        found = ellipsoid_fraction(
            draw.centre_mm, draw.semi_axes_mm, draw.angle_deg, geometry, zs, supersample
        )
        if found is None:
            continue
        f, win, uc, vc, wc = found
        blend_lesion((soft, fat, bone, iodine), win, f, *draw.look.sample(uc, vc, wc))
        labels[win][f >= 0.5] = draw.track
        fractions[draw.track] = (win, f)
    for dense in rt_dense.values():
        dense &= labels == 0
    components = SliceComponents(soft, fat, bone, iodine, labels, np.zeros(shape, dtype=np.float32))
    return RenderedSlice(components, fractions, rt_dense)
