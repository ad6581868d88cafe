"""A thorax phantom rendered slice by slice: body, fat, lungs, heart, aorta, spine and lesions.

Each slice is returned as material components (:class:`SliceComponents`) so that a
conventional CT image, every virtual monoenergetic image and the iodine map are computed from
the same anatomy (:func:`hounsfield`). The patient frame is LPS in mm with its origin at the
centre of the scan; the scanner frame is the patient frame moved by the timepoint's
:class:`~clinic.story.Pose`. Image rows run along +y (posterior), columns along +x (left).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from clinic.story import Lesion, Patient, Pose, lesion_semi_axes

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


class LesionTexture:
    """Phenotype-carrying texture of a lesion, fixed in the lesion's normalised frame.

    Inflamed tumours are heterogeneous with an enhancing rim; desert tumours have a
    hypo-enhancing necrotic core. Texture and enhancement follow the patient's immune activity
    with noise (see :mod:`clinic.story`).
    """

    _N = 20  # grid points over [-1.25, 1.25] per axis

    def __init__(self, patient: Patient, lesion: Lesion, rng: np.random.Generator) -> None:
        noise = rng.normal(0.0, 1.0, (self._N, self._N, self._N))
        noise = ndimage.gaussian_filter(noise, 1.6)
        self._noise = (noise / (noise.std() + 1e-9)).astype(np.float32)
        self.heterogeneity = patient.heterogeneity
        self.rim = patient.rim_enhancement
        self.core = patient.core_iodine
        self.necrosis = patient.necrosis if lesion.irradiated else 0.5 * patient.necrosis

    def sample(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(soft HU, iodine mg/ml) at normalised lesion coordinates (1 = the surface)."""
        scale = (self._N - 1) / 2.5
        coords = np.stack([(u + 1.25) * scale, (v + 1.25) * scale, (w + 1.25) * scale])
        tex = ndimage.map_coordinates(self._noise, coords, order=1, mode="nearest")
        rho = np.sqrt(u * u + v * v + w * w)
        rim = np.clip((rho - 0.7) / 0.3, 0.0, 1.0)
        core = 1.0 / (1.0 + np.exp((rho - self.necrosis) / 0.05)) if self.necrosis > 0.02 else 0.0
        iodine = self.core * (1.0 - 0.85 * core) + self.rim * rim + 0.05 * self.heterogeneity * tex
        soft = 38.0 - 18.0 * core + self.heterogeneity * tex
        return soft, np.clip(iodine, 0.0, None)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


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
    xs, ys = geometry.x_mm(), geometry.y_mm()
    sx, sy = np.meshgrid(xs, ys)  # scanner frame, shape rows x cols
    zs = geometry.z_mm(k)
    yaw = math.radians(pose.yaw_deg)
    cos, sin = math.cos(yaw), math.sin(yaw)
    dx, dy, dz = pose.shift_mm
    # patient = R^-1 (scanner - shift)
    px = cos * (sx - dx) + sin * (sy - dy)
    py = -sin * (sx - dx) + cos * (sy - dy)
    pz = zs - dz

    an = patient.anatomy
    ba, bb = an.body_semi_axes_mm
    shape = sx.shape
    soft = np.full(shape, -1000.0, dtype=np.float32)
    fat = np.zeros(shape, dtype=np.float32)
    bone = np.zeros(shape, dtype=np.float32)
    iodine = np.zeros(shape, dtype=np.float32)

    # table, fixed in the scanner frame
    table = (sy > bb + 12.0) & (sy < bb + 22.0) & (np.abs(sx) < 0.9 * ba)
    soft[table] = -250.0

    body = _ellipse(px, py, 0.0, 0.0, ba, bb)
    inner = _ellipse(px, py, 0.0, 0.0, ba - an.fat_mm, bb - an.fat_mm)
    soft[body] = 0.0
    fat[body & ~inner] = 1.0
    soft[inner] = 45.0
    iodine[inner] = 0.6  # enhancing muscle

    apex = max(0.15, 1.0 - (max(pz, 0.0) / 180.0) ** 2)
    la, lb = an.lung_semi_axes_mm
    for side in (-1.0, 1.0):
        lung = _ellipse(px, py, side * an.lung_offset_x_mm, -10.0, la * apex, lb * apex)
        soft[lung] = -860.0
        iodine[lung] = 0.0
    heart = _ellipse(px, py, 5.0, -25.0, 38.0, 42.0) & (pz < 20.0)
    soft[heart] = 40.0
    iodine[heart] = 4.5
    aorta = _ellipse(px, py, 18.0, 30.0, 13.0, 13.0)
    soft[aorta] = 40.0
    iodine[aorta] = 7.0
    vert = _ellipse(px, py, 0.0, bb - 40.0, 19.0, 17.0)
    cortex = vert & ~_ellipse(px, py, 0.0, bb - 40.0, 15.0, 13.0)
    soft[vert] = 30.0
    iodine[vert] = 0.0
    bone[vert] = 0.22
    bone[cortex] = 0.75

    labels = np.zeros(shape, dtype=np.uint8)
    target_fraction = np.zeros(shape, dtype=np.float32)
    for lesion, texture in zip(patient.lesions, textures, strict=True):
        frac, les_soft, les_iod, box = _lesion_slice(
            lesion, days, geometry, zs, pose, texture, supersample
        )
        if frac is None:
            continue
        r0, r1, c0, c1 = box
        win = (slice(r0, r1), slice(c0, c1))
        f = frac
        soft[win] = (1.0 - f) * soft[win] + f * les_soft
        iodine[win] = (1.0 - f) * iodine[win] + f * les_iod
        fat[win] = (1.0 - f) * fat[win]
        bone[win] = (1.0 - f) * bone[win]
        labels[win][f >= 0.5] = lesion.index + 1
        if lesion.irradiated:
            target_fraction[win] = f
    return SliceComponents(soft, fat, bone, iodine, labels, target_fraction)


def lesion_centre_scanner(lesion: Lesion, pose: Pose) -> tuple[float, float, float]:
    """Lesion centre in the scanner frame."""
    yaw = math.radians(pose.yaw_deg)
    x, y, z = lesion.centre_mm
    return (
        math.cos(yaw) * x - math.sin(yaw) * y + pose.shift_mm[0],
        math.sin(yaw) * x + math.cos(yaw) * y + pose.shift_mm[1],
        z + pose.shift_mm[2],
    )


def _lesion_slice(
    lesion: Lesion,
    days: float,
    g: Geometry,
    zs: float,
    pose: Pose,
    texture: LesionTexture,
    ss: int,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    a, b, c = lesion_semi_axes(lesion, days)
    cx, cy, cz = lesion_centre_scanner(lesion, pose)
    empty = np.zeros(0)
    if abs(zs - cz) > c + g.slice_mm:
        return None, empty, empty, (0, 0, 0, 0)
    reach = max(a, b) + 2 * g.pixel_mm
    xs, ys = g.x_mm(), g.y_mm()
    c0, c1 = np.searchsorted(xs, cx - reach), np.searchsorted(xs, cx + reach)
    r0, r1 = np.searchsorted(ys, cy - reach), np.searchsorted(ys, cy + reach)
    if c1 <= c0 or r1 <= r0:
        return None, empty, empty, (0, 0, 0, 0)
    # sub-voxel offsets for partial volume
    off = (np.arange(ss) - (ss - 1) / 2.0) / ss
    gx = (xs[c0:c1, None] + off[None, :] * g.pixel_mm).ravel()
    gy = (ys[r0:r1, None] + off[None, :] * g.pixel_mm).ravel()
    theta = math.radians(pose.yaw_deg + lesion.angle_deg)
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
        return None, empty, empty, (0, 0, 0, 0)
    uc = u.reshape(nr, ss, nc, ss).mean(axis=(1, 3))
    vc = v.reshape(nr, ss, nc, ss).mean(axis=(1, 3))
    wc = np.full_like(uc, (zs - cz) / c)
    les_soft, les_iod = texture.sample(uc, vc, wc)
    return frac, les_soft, les_iod, (int(r0), int(r1), int(c0), int(c1))


def add_noise(
    image: np.ndarray, sigma: float, rng: np.random.Generator, correlation_px: float = 0.7
) -> np.ndarray:
    """Add CT-like (slightly correlated) Gaussian noise of standard deviation ``sigma``."""
    n = rng.normal(0.0, 1.0, image.shape).astype(np.float32)
    if correlation_px > 0:
        n = ndimage.gaussian_filter(n, correlation_px)
        n /= n.std() + 1e-9
    return image + sigma * n
