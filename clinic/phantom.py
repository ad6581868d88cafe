"""A thorax phantom rendered slice by slice: body, fat, lungs, heart, aorta, spine and lesions.

Each slice is returned as material components (:class:`SliceComponents`) so that a
conventional CT image, every virtual monoenergetic image and the iodine map are computed from
the same anatomy (:func:`hounsfield`). The patient frame is LPS in mm with its origin at the
centre of the scan; the scanner frame is the patient frame moved by the timepoint's
:class:`~clinic.story.Pose`. Image rows run along +y (posterior), columns along +x (left).

Story v2 (:mod:`clinic.story_v2.render`) draws its own organs and lesions with the same pieces:
the slice's pixel grid in both frames (:func:`slice_grid`), the body on its table
(:func:`trunk`), aorta and spine (:func:`paint_aorta_and_spine`), a lesion's partial volume
(:func:`ellipsoid_fraction`) mixed into the materials (:func:`blend_lesion`) and its texture
(:class:`LesionPattern`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from clinic.story import Anatomy, Lesion, Patient, Pose, lesion_semi_axes

# Iodine contrast (HU per mg/ml), bone and fat scaling by virtual monoenergetic energy (keV).
_KEV = np.array([40.0, 55.0, 70.0, 100.0, 140.0])
_IODINE_HU_PER_MGML = np.array([90.0, 45.0, 26.0, 12.5, 6.8])
_BONE_SCALE = np.array([1.9, 1.35, 1.0, 0.74, 0.62])
_FAT_SCALE = np.array([1.35, 1.15, 1.0, 0.88, 0.82])
_NOISE_HU = np.array([26.0, 16.0, 12.0, 12.0, 14.0])
CONVENTIONAL_KEV = 70.0
"""A conventional 120 kVp CT is rendered as its 70 keV equivalent."""


def _interp(kev: float, table: np.ndarray) -> float:
    return float(np.exp(np.interp(math.log(kev), np.log(_KEV), np.log(table))))


def iodine_hu_per_mgml(kev: float) -> float:
    """Attenuation added by 1 mg/ml of iodine at ``kev`` (HU)."""
    return _interp(kev, _IODINE_HU_PER_MGML)


def noise_hu(kev: float) -> float:
    """Image noise standard deviation at ``kev`` (HU)."""
    return _interp(kev, _NOISE_HU)


@dataclass(frozen=True)
class Geometry:
    """A stack of axial slices centred on the scanner origin."""

    rows: int
    cols: int
    n_slices: int
    pixel_mm: float
    slice_mm: float

    def x_mm(self) -> np.ndarray:
        return (np.arange(self.cols) - (self.cols - 1) / 2.0) * self.pixel_mm

    def y_mm(self) -> np.ndarray:
        return (np.arange(self.rows) - (self.rows - 1) / 2.0) * self.pixel_mm

    def z_mm(self, k: int) -> float:
        """Scanner z of slice ``k`` (slice 0 is the most inferior)."""
        return (k - (self.n_slices - 1) / 2.0) * self.slice_mm

    def origin_mm(self, k: int) -> tuple[float, float, float]:
        """Image Position (Patient) of slice ``k``: centre of its first pixel."""
        return (float(self.x_mm()[0]), float(self.y_mm()[0]), self.z_mm(k))

    @property
    def voxel_ml(self) -> float:
        return self.pixel_mm * self.pixel_mm * self.slice_mm / 1000.0


@dataclass
class SliceComponents:
    """Material components of one slice (arrays of shape rows x cols)."""

    soft_hu: np.ndarray  # energy-flat part, HU (air and lung included)
    fat: np.ndarray  # fat fraction, rendered as -100 HU at 70 keV
    bone: np.ndarray  # bone fraction, rendered as +1000 HU at 70 keV
    iodine: np.ndarray  # mg/ml
    labels: np.ndarray  # uint8: 0 background, 1 + lesion index
    target_fraction: np.ndarray  # partial volume of the target lesion (0..1)


def hounsfield(c: SliceComponents, kev: float) -> np.ndarray:
    """Noise-free attenuation (HU) of a slice at ``kev``."""
    return (
        c.soft_hu
        - 100.0 * _interp(kev, _FAT_SCALE) * c.fat
        + 1000.0 * _interp(kev, _BONE_SCALE) * c.bone
        + iodine_hu_per_mgml(kev) * c.iodine
    )


class LesionPattern:
    """A lesion's texture (smooth noise fixed in its normalised frame) and enhancement.

    ``heterogeneity`` is the texture amplitude (HU), ``rim`` the iodine excess at the rim and
    ``core`` the iodine in the core (mg/ml), ``necrosis`` the fraction of the radius that is
    necrotic core (0: none). Both stories draw lesions with it; they differ in where the numbers
    come from (:class:`LesionTexture`, :class:`clinic.story_v2.render.LesionLook`).
    """

    _N = 20  # grid points over [-1.25, 1.25] per axis

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        heterogeneity: float,
        rim: float,
        core: float,
        necrosis: float,
    ) -> None:
        noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (self._N,) * 3), 1.6)
        self._noise = (noise / (noise.std() + 1e-9)).astype(np.float32)
        self.heterogeneity = heterogeneity
        self.rim = rim
        self.core = core
        self.necrosis = necrosis

    def noise(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The texture noise (unit variance) at normalised lesion coordinates."""
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


class LesionTexture(LesionPattern):
    """Phenotype-carrying texture of a story-v1 lesion.

    Inflamed tumours are heterogeneous with an enhancing rim; desert tumours have a
    hypo-enhancing necrotic core. Texture and enhancement follow the patient's immune activity
    with noise (see :mod:`clinic.story`); a non-irradiated lesion has half the necrosis.
    """

    def __init__(self, patient: Patient, lesion: Lesion, rng: np.random.Generator) -> None:
        super().__init__(
            rng,
            heterogeneity=patient.heterogeneity,
            rim=patient.rim_enhancement,
            core=patient.core_iodine,
            necrosis=patient.necrosis if lesion.irradiated else 0.5 * patient.necrosis,
        )


def ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """Where ``(x, y)`` lies in the axis-aligned ellipse of centre ``(cx, cy)``, semi-axes a, b."""
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


def to_scanner(point: tuple[float, float, float], pose: Pose) -> tuple[float, float, float]:
    """A point of the patient frame in the scanner frame of a scan taken in ``pose``."""
    yaw = math.radians(pose.yaw_deg)
    x, y, z = point
    return (
        math.cos(yaw) * x - math.sin(yaw) * y + pose.shift_mm[0],
        math.sin(yaw) * x + math.cos(yaw) * y + pose.shift_mm[1],
        z + pose.shift_mm[2],
    )


class SliceGrid(NamedTuple):
    """Pixel centres of one slice in the scanner frame and in the patient frame."""

    sx: np.ndarray  # scanner x, rows x cols
    sy: np.ndarray
    px: np.ndarray  # patient x, rows x cols
    py: np.ndarray
    z_scanner: float
    z_patient: float


def slice_grid(geometry: Geometry, k: int, pose: Pose) -> SliceGrid:
    """Pixel centres of slice ``k`` of a scan taken in ``pose``."""
    xs, ys = geometry.x_mm(), geometry.y_mm()
    sx, sy = np.meshgrid(xs, ys)  # scanner frame, shape rows x cols
    zs = geometry.z_mm(k)
    yaw = math.radians(pose.yaw_deg)
    cos, sin = math.cos(yaw), math.sin(yaw)
    dx, dy, dz = pose.shift_mm
    # patient = R^-1 (scanner - shift)
    px = cos * (sx - dx) + sin * (sy - dy)
    py = -sin * (sx - dx) + cos * (sy - dy)
    return SliceGrid(sx, sy, px, py, zs, zs - dz)


def trunk(
    anatomy: Anatomy, grid: SliceGrid
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(soft HU, fat, bone, iodine) of air, the table, the body, its fat and enhancing muscle.

    Every slice starts from these; the organs are painted over them.
    """
    sx, sy, px, py = grid.sx, grid.sy, grid.px, grid.py
    ba, bb = anatomy.body_semi_axes_mm
    shape = sx.shape
    soft = np.full(shape, -1000.0, dtype=np.float32)
    fat = np.zeros(shape, dtype=np.float32)
    bone = np.zeros(shape, dtype=np.float32)
    iodine = np.zeros(shape, dtype=np.float32)

    # table, fixed in the scanner frame
    table = (sy > bb + 12.0) & (sy < bb + 22.0) & (np.abs(sx) < 0.9 * ba)
    soft[table] = -250.0

    body = ellipse(px, py, 0.0, 0.0, ba, bb)
    inner = ellipse(px, py, 0.0, 0.0, ba - anatomy.fat_mm, bb - anatomy.fat_mm)
    soft[body] = 0.0
    fat[body & ~inner] = 1.0
    soft[inner] = 45.0
    iodine[inner] = 0.6  # enhancing muscle
    return soft, fat, bone, iodine


def spine_y_mm(anatomy: Anatomy) -> float:
    """y of the vertebral bodies' centre."""
    return anatomy.body_semi_axes_mm[1] - 40.0


def paint_aorta_and_spine(
    anatomy: Anatomy,
    grid: SliceGrid,
    soft: np.ndarray,
    iodine: np.ndarray,
    bone: np.ndarray,
) -> np.ndarray:
    """Paint the descending aorta and a vertebral body (cortex and marrow); return where."""
    px, py = grid.px, grid.py
    aorta = ellipse(px, py, 18.0, 30.0, 13.0, 13.0)
    soft[aorta] = 40.0
    iodine[aorta] = 7.0
    spine = spine_y_mm(anatomy)
    vert = ellipse(px, py, 0.0, spine, 19.0, 17.0)
    cortex = vert & ~ellipse(px, py, 0.0, spine, 15.0, 13.0)
    soft[vert] = 30.0
    iodine[vert] = 0.0
    bone[vert] = 0.22
    bone[cortex] = 0.75
    return aorta | vert


def render_slice(
    patient: Patient,
    days: float,
    pose: Pose,
    geometry: Geometry,
    k: int,
    textures: list[LesionTexture],
    supersample: int = 3,
) -> SliceComponents:
    """Material components of slice ``k`` of ``patient`` scanned at ``days`` in ``pose``."""
    grid = slice_grid(geometry, k, pose)
    px, py, pz = grid.px, grid.py, grid.z_patient
    an = patient.anatomy
    soft, fat, bone, iodine = trunk(an, grid)

    apex = max(0.15, 1.0 - (max(pz, 0.0) / 180.0) ** 2)
    la, lb = an.lung_semi_axes_mm
    for side in (-1.0, 1.0):
        lung = ellipse(px, py, side * an.lung_offset_x_mm, -10.0, la * apex, lb * apex)
        soft[lung] = -860.0
        iodine[lung] = 0.0
    heart = ellipse(px, py, 5.0, -25.0, 38.0, 42.0) & (pz < 20.0)
    soft[heart] = 40.0
    iodine[heart] = 4.5
    paint_aorta_and_spine(an, grid, soft, iodine, bone)

    shape = px.shape
    labels = np.zeros(shape, dtype=np.uint8)
    target_fraction = np.zeros(shape, dtype=np.float32)
    for lesion, texture in zip(patient.lesions, textures, strict=True):
        found = ellipsoid_fraction(
            to_scanner(lesion.centre_mm, pose),
            lesion_semi_axes(lesion, days),
            pose.yaw_deg + lesion.angle_deg,
            geometry,
            grid.z_scanner,
            supersample,
        )
        if found is None:
            continue
        f, win, uc, vc, wc = found
        blend_lesion((soft, fat, bone, iodine), win, f, *texture.sample(uc, vc, wc))
        labels[win][f >= 0.5] = lesion.index + 1
        if lesion.irradiated:
            target_fraction[win] = f
    return SliceComponents(soft, fat, bone, iodine, labels, target_fraction)


def pixel_window(g: Geometry, cx: float, cy: float, reach: float) -> tuple[slice, slice] | None:
    """Rows and columns of the pixels within ``reach`` mm (per axis) of scanner ``(cx, cy)``."""
    xs, ys = g.x_mm(), g.y_mm()
    c0, c1 = int(np.searchsorted(xs, cx - reach)), int(np.searchsorted(xs, cx + reach))
    r0, r1 = int(np.searchsorted(ys, cy - reach)), int(np.searchsorted(ys, cy + reach))
    if c1 <= c0 or r1 <= r0:
        return None
    return slice(r0, r1), slice(c0, c1)


def ellipsoid_fraction(
    centre_mm: tuple[float, float, float],
    semi_axes_mm: tuple[float, float, float],
    angle_deg: float,
    g: Geometry,
    zs: float,
    ss: int,
) -> tuple[np.ndarray, tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray] | None:
    """Partial-volume fraction of an ellipsoid on the slice at scanner height ``zs``.

    The ellipsoid (scanner frame) has semi-axes a, b in the axial plane, rotated by
    ``angle_deg`` about z, and c along z; each pixel is sampled ``ss`` x ``ss`` x ``ss`` times.
    Returns (fraction, window, u, v, w), the last three the normalised lesion coordinates of the
    window's pixel centres (1 = the surface), or ``None`` where the slice misses it.
    """
    a, b, c = semi_axes_mm
    cx, cy, cz = centre_mm
    if abs(zs - cz) > c + g.slice_mm:
        return None
    win = pixel_window(g, cx, cy, max(a, b) + 2 * g.pixel_mm)
    if win is None:
        return None
    rows, cols = win
    xs, ys = g.x_mm(), g.y_mm()
    # sub-voxel offsets for partial volume
    off = (np.arange(ss) - (ss - 1) / 2.0) / ss
    gx = (xs[cols, None] + off[None, :] * g.pixel_mm).ravel()
    gy = (ys[rows, None] + off[None, :] * g.pixel_mm).ravel()
    theta = math.radians(angle_deg)
    ct, st = math.cos(theta), math.sin(theta)
    yy, xx = np.meshgrid(gy - cy, gx - cx, indexing="ij")
    u = (ct * xx + st * yy) / a
    v = (-st * xx + ct * yy) / b
    inside = np.zeros(u.shape, dtype=np.float32)
    for oz in off:
        w = (zs + oz * g.slice_mm - cz) / c
        inside += (u * u + v * v + w * w) <= 1.0
    inside /= ss
    nr, nc = rows.stop - rows.start, cols.stop - cols.start
    frac = inside.reshape(nr, ss, nc, ss).mean(axis=(1, 3))
    if not frac.any():
        return None
    uc = u.reshape(nr, ss, nc, ss).mean(axis=(1, 3))
    vc = v.reshape(nr, ss, nc, ss).mean(axis=(1, 3))
    wc = np.full_like(uc, (zs - cz) / c)
    return frac, win, uc, vc, wc


def blend_lesion(
    materials: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    win: tuple[slice, slice],
    frac: np.ndarray,
    lesion_soft: np.ndarray,
    lesion_iodine: np.ndarray,
) -> None:
    """Mix a lesion into (soft, fat, bone, iodine) in ``win`` by its partial volume ``frac``."""
    soft, fat, bone, iodine = materials
    soft[win] = (1.0 - frac) * soft[win] + frac * lesion_soft
    iodine[win] = (1.0 - frac) * iodine[win] + frac * lesion_iodine
    fat[win] = (1.0 - frac) * fat[win]
    bone[win] = (1.0 - frac) * bone[win]


def add_noise(
    image: np.ndarray, sigma: float, rng: np.random.Generator, correlation_px: float = 0.7
) -> np.ndarray:
    """Add CT-like (slightly correlated) Gaussian noise of standard deviation ``sigma``."""
    n = rng.normal(0.0, 1.0, image.shape).astype(np.float32)
    if correlation_px > 0:
        n = ndimage.gaussian_filter(n, correlation_px)
        n /= n.std() + 1e-9
    return image + sigma * n
