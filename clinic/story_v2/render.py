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
from scipy import ndimage

from clinic.phantom import Geometry, SliceComponents
from clinic.story import Pose
from clinic.story_v2 import params
from clinic.story_v2.anatomy import (
    ADRENAL_SEMI_AXES_MM,
    HEART_Z_RANGE_MM,
    LIVER_CENTRE_MM,
    LIVER_SEMI_AXES_MM,
    adrenal_centres_mm,
    lung_scale,
    spine_y_mm,
)
from clinic.story_v2.patient import PatientV2

_LUNG_HU = -860.0


class LesionLook:
    """A lesion's texture pattern (fixed in its own frame) and, per scan, how strong it is.

    The enhancement and texture gains map the CT reading (unit variance after scaling) to
    HU and mg/ml as story v1 did (assumption: rendering constants); ``enhancement`` scales the
    iodine (liver metastases are drawn at half, so that they stand out dark against the
    enhancing liver, as hypovascular metastases do in the portal-venous phase).
    """

    _N = 20  # grid points over [-1.25, 1.25] per axis

    def __init__(
        self,
        rng: np.random.Generator,
        reading: float,
        necrosis: float,
        enhancement: float = 1.0,
    ) -> None:
        noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (self._N,) * 3), 1.6)
        self._noise = (noise / (noise.std() + 1e-9)).astype(np.float32)
        z = reading / math.sqrt(1.0 + params.CT_NOISE_SD**2)
        self.heterogeneity = float(np.clip(12.0 + 5.0 * z, 3.0, 30.0))
        self.rim = enhancement * float(np.clip(0.6 + 0.4 * z, 0.0, 3.0))
        self.core = enhancement * float(np.clip(1.5 + 0.3 * z, 0.3, 3.0))
        self.necrosis = necrosis

    def noise(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        scale = (self._N - 1) / 2.5
        coords = np.stack([(u + 1.25) * scale, (v + 1.25) * scale, (w + 1.25) * scale])
        return ndimage.map_coordinates(self._noise, coords, order=1, mode="nearest")

    def sample(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(soft HU, iodine mg/ml) at normalised lesion coordinates (1 = the surface)."""
        tex = self.noise(u, v, w)
        rho = np.sqrt(u * u + v * v + w * w)
        rim = np.clip((rho - 0.7) / 0.3, 0.0, 1.0)
        core = 1.0 / (1.0 + np.exp((rho - self.necrosis) / 0.05)) if self.necrosis > 0.02 else 0.0
        iodine = self.core * (1.0 - 0.85 * core) + self.rim * rim + 0.05 * self.heterogeneity * tex
        soft = 38.0 - 18.0 * core + self.heterogeneity * tex
        return soft, np.clip(iodine, 0.0, None)


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


def to_scanner(point: tuple[float, float, float], pose: Pose) -> tuple[float, float, float]:
    """A point of the patient frame in the scanner frame of a scan taken in ``pose``."""
    yaw = math.radians(pose.yaw_deg)
    x, y, z = point
    return (
        math.cos(yaw) * x - math.sin(yaw) * y + pose.shift_mm[0],
        math.sin(yaw) * x + math.cos(yaw) * y + pose.shift_mm[1],
        z + pose.shift_mm[2],
    )


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


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
    patient: PatientV2, px: np.ndarray, py: np.ndarray, pz: float, sx: np.ndarray, sy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(soft, fat, bone, iodine, lung mask) of the organs at patient height ``pz``."""
    an = patient.anatomy
    ba, bb = an.body_semi_axes_mm
    shape = px.shape
    soft = np.full(shape, -1000.0, dtype=np.float32)
    fat = np.zeros(shape, dtype=np.float32)
    bone = np.zeros(shape, dtype=np.float32)
    iodine = np.zeros(shape, dtype=np.float32)

    table = (sy > bb + 12.0) & (sy < bb + 22.0) & (np.abs(sx) < 0.9 * ba)
    soft[table] = -250.0
    body = _ellipse(px, py, 0.0, 0.0, ba, bb)
    inner = _ellipse(px, py, 0.0, 0.0, ba - an.fat_mm, bb - an.fat_mm)
    soft[body] = 0.0
    fat[body & ~inner] = 1.0
    soft[inner] = 45.0
    iodine[inner] = 0.6  # enhancing muscle

    lung = np.zeros(shape, dtype=bool)
    scale = lung_scale(pz)
    la, lb = an.lung_semi_axes_mm
    if scale > 0.0:
        for side in (-1.0, 1.0):
            lung |= _ellipse(px, py, side * an.lung_offset_x_mm, -10.0, la * scale, lb * scale)
    soft[lung] = _LUNG_HU
    iodine[lung] = 0.0

    section = _section(LIVER_CENTRE_MM, LIVER_SEMI_AXES_MM, pz)
    if section is not None:
        liver = _ellipse(px, py, LIVER_CENTRE_MM[0], LIVER_CENTRE_MM[1], *section)
        soft[liver] = 55.0
        iodine[liver] = 1.2  # portal-venous enhancement (assumption: rendering constant)
        lung &= ~liver
    if HEART_Z_RANGE_MM[0] < pz < HEART_Z_RANGE_MM[1]:
        heart = _ellipse(px, py, 5.0, -25.0, 38.0, 42.0)
        soft[heart] = 40.0
        iodine[heart] = 4.5
        lung &= ~heart
    aorta = _ellipse(px, py, 18.0, 30.0, 13.0, 13.0)
    soft[aorta] = 40.0
    iodine[aorta] = 7.0
    lung &= ~aorta
    spine = spine_y_mm(an)
    vert = _ellipse(px, py, 0.0, spine, 19.0, 17.0)
    cortex = vert & ~_ellipse(px, py, 0.0, spine, 15.0, 13.0)
    soft[vert] = 30.0
    iodine[vert] = 0.0
    bone[vert] = 0.22
    bone[cortex] = 0.75
    lung &= ~vert
    for centre in adrenal_centres_mm(an):
        sec = _section(centre, ADRENAL_SEMI_AXES_MM, pz)
        if sec is not None:
            gland = _ellipse(px, py, centre[0], centre[1], *sec)
            soft[gland] = 40.0
            iodine[gland] = 1.0
            lung &= ~gland
    return soft, fat, bone, iodine, lung


def _window(g: Geometry, cx: float, cy: float, reach: float) -> tuple[int, int, int, int] | None:
    xs, ys = g.x_mm(), g.y_mm()
    c0, c1 = int(np.searchsorted(xs, cx - reach)), int(np.searchsorted(xs, cx + reach))
    r0, r1 = int(np.searchsorted(ys, cy - reach)), int(np.searchsorted(ys, cy + reach))
    if c1 <= c0 or r1 <= r0:
        return None
    return r0, r1, c0, c1


def _ellipsoid_fraction(
    draw: LesionDraw, g: Geometry, zs: float, ss: int
) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray, np.ndarray, np.ndarray] | None:
    """Partial-volume fraction of a lesion on slice height ``zs`` and its normalised coords."""
    a, b, c = draw.semi_axes_mm
    cx, cy, cz = draw.centre_mm
    if abs(zs - cz) > c + g.slice_mm:
        return None
    box = _window(g, cx, cy, max(a, b) + 2 * g.pixel_mm)
    if box is None:
        return None
    r0, r1, c0, c1 = box
    xs, ys = g.x_mm(), g.y_mm()
    off = (np.arange(ss) - (ss - 1) / 2.0) / ss
    gx = (xs[c0:c1, None] + off[None, :] * g.pixel_mm).ravel()
    gy = (ys[r0:r1, None] + off[None, :] * g.pixel_mm).ravel()
    theta = math.radians(draw.angle_deg)
    ct, st = math.cos(theta), math.sin(theta)
    yy, xx = np.meshgrid(gy - cy, gx - cx, indexing="ij")
    u = (ct * xx + st * yy) / a
    v = (-st * xx + ct * yy) / b
    inside = np.zeros(u.shape, dtype=np.float32)
    for oz in off:
        w = (zs + oz * g.slice_mm - cz) / c
        inside += (u * u + v * v + w * w) <= 1.0
    inside /= ss
    nr, nc = r1 - r0, c1 - c0
    frac = inside.reshape(nr, ss, nc, ss).mean(axis=(1, 3))
    if not frac.any():
        return None
    uc = u.reshape(nr, ss, nc, ss).mean(axis=(1, 3))
    vc = v.reshape(nr, ss, nc, ss).mean(axis=(1, 3))
    wc = np.full_like(uc, (zs - cz) / c)
    return frac, box, uc, vc, wc


def _rt_change(
    draw: LesionDraw, g: Geometry, zs: float, soft: np.ndarray, iodine: np.ndarray, lung: np.ndarray
) -> np.ndarray | None:
    """Paint the lung change around an irradiated lesion; return where it is dense."""
    a, b, c = draw.rt_semi_axes_mm
    cx, cy, cz = draw.centre_mm
    if draw.rt_severity <= 0.0 or abs(zs - cz) > c or draw.rt_look is None:
        return None
    box = _window(g, cx, cy, max(a, b) + g.pixel_mm)
    if box is None:
        return None
    r0, r1, c0, c1 = box
    xs, ys = g.x_mm(), g.y_mm()
    yy, xx = np.meshgrid(ys[r0:r1] - cy, xs[c0:c1] - cx, indexing="ij")
    theta = math.radians(draw.angle_deg)
    ct, st = math.cos(theta), math.sin(theta)
    u = (ct * xx + st * yy) / a
    v = (-st * xx + ct * yy) / b
    w = np.full_like(u, (zs - cz) / c)
    rho = np.sqrt(u * u + v * v + w * w)
    weight = np.clip((1.0 - rho) / 0.35, 0.0, 1.0)
    tex = draw.rt_look.noise(u, v, w)
    win = (slice(r0, r1), slice(c0, c1))
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
    xs, ys = geometry.x_mm(), geometry.y_mm()
    sx, sy = np.meshgrid(xs, ys)
    zs = geometry.z_mm(k)
    yaw = math.radians(pose.yaw_deg)
    cos, sin = math.cos(yaw), math.sin(yaw)
    dx, dy, dz = pose.shift_mm
    px = cos * (sx - dx) + sin * (sy - dy)
    py = -sin * (sx - dx) + cos * (sy - dy)
    soft, fat, bone, iodine, lung = _organs(patient, px, py, zs - dz, sx, sy)

    rt_dense: dict[int, np.ndarray] = {}
    for draw in draws:
        dense = _rt_change(draw, geometry, zs, soft, iodine, lung)
        if dense is not None:
            rt_dense[draw.track] = dense

    labels = np.zeros(sx.shape, dtype=np.uint8)
    fractions: dict[int, tuple[tuple[slice, slice], np.ndarray]] = {}
    for draw in draws:
        found = _ellipsoid_fraction(draw, geometry, zs, supersample)
        if found is None:
            continue
        f, (r0, r1, c0, c1), uc, vc, wc = found
        win = (slice(r0, r1), slice(c0, c1))
        les_soft, les_iod = draw.look.sample(uc, vc, wc)
        soft[win] = (1.0 - f) * soft[win] + f * les_soft
        iodine[win] = (1.0 - f) * iodine[win] + f * les_iod
        fat[win] = (1.0 - f) * fat[win]
        bone[win] = (1.0 - f) * bone[win]
        labels[win][f >= 0.5] = draw.track
        fractions[draw.track] = (win, f)
    for dense in rt_dense.values():
        dense &= labels == 0
    components = SliceComponents(
        soft, fat, bone, iodine, labels, np.zeros(sx.shape, dtype=np.float32)
    )
    return RenderedSlice(components, fractions, rt_dense)
