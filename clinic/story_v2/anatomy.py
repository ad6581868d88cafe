"""Where lesions can sit in the story-v2 phantom: organs and the lesion slots inside them.

The phantom is a chest and upper abdomen pressed into the 120 mm that the smallest image size
covers along z (``test``: 40 slices of 3 mm): lungs above, the liver dome and the adrenal
glands below, vertebral bodies and mediastinal nodes in between. Lesions sit in fixed *slots*
(one lesion per slot); a slot's centre follows the patient's body and lung outline and its
radius bounds the lesion, so that no two lesions ever touch and none leaves the smallest field
of view (slot centre ``|z| + radius <= 52 mm``, leaving 6 mm for the patient's position).
Positions are in the patient frame of :mod:`clinic.phantom` (LPS, mm: +x patient left, +y
posterior, +z superior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from clinic.phantom import spine_y_mm
from clinic.story import Anatomy


class Organ(StrEnum):
    """Organ of a lesion (the name of the finding site a reader would give)."""

    LUNG = "lung"
    LIVER = "liver"
    ADRENAL = "adrenal"
    BONE = "bone"
    LYMPH_NODE = "lymph_node"


@dataclass(frozen=True)
class Slot:
    """A place for one lesion: its organ, centre (patient frame, mm) and largest semi-axis."""

    name: str
    organ: Organ
    centre_mm: tuple[float, float, float]
    max_radius_mm: float


LIVER_CENTRE_MM = (-50.0, -10.0, -70.0)
LIVER_SEMI_AXES_MM = (80.0, 70.0, 65.0)
HEART_Z_RANGE_MM = (-15.0, 20.0)
ADRENAL_SEMI_AXES_MM = (5.0, 11.0, 15.0)
LUNG_BASE_Z_MM = -20.0
"""Below this z the lungs narrow towards their bases (and the liver takes the right side)."""
LUNG_BASE_DEPTH_MM = 45.0
SLOT_JITTER_MM = 2.0
"""Each lesion's centre is moved by up to this much (per axis) from its slot's centre."""


def adrenal_centres_mm(anatomy: Anatomy) -> tuple[tuple[float, float, float], ...]:
    """Centres of the right and left adrenal glands."""
    y = spine_y_mm(anatomy) - 12.0
    return ((-45.0, y, -36.0), (45.0, y, -36.0))


def lung_scale(z_mm: float) -> float:
    """Factor on the lungs' axial semi-axes at height ``z``: the apex above, the base below."""
    if z_mm > 0.0:
        return max(0.15, 1.0 - (z_mm / 180.0) ** 2)  # as story v1
    if z_mm < LUNG_BASE_Z_MM:
        depth = (LUNG_BASE_Z_MM - z_mm) / LUNG_BASE_DEPTH_MM
        return math.sqrt(max(0.0, 1.0 - depth * depth))
    return 1.0


def slots(anatomy: Anatomy) -> tuple[Slot, ...]:
    """Every lesion slot of a patient, in a fixed order."""
    off = anatomy.lung_offset_x_mm
    spine = spine_y_mm(anatomy)
    (rx, ry, rz), (lx, ly, lz) = adrenal_centres_mm(anatomy)
    return (
        Slot("lung_right_upper", Organ.LUNG, (-off, -25.0, 28.0), 24.0),
        Slot("lung_right_lower", Organ.LUNG, (-(off + 5.0), 18.0, 6.0), 16.0),
        Slot("lung_left_upper", Organ.LUNG, (off, -25.0, 28.0), 24.0),
        Slot("lung_left_lower", Organ.LUNG, (off + 5.0, 15.0, -18.0), 22.0),
        Slot("liver_lateral", Organ.LIVER, (-60.0, -20.0, -32.0), 16.0),
        Slot("liver_medial", Organ.LIVER, (-22.0, 20.0, -38.0), 14.0),
        Slot("adrenal_right", Organ.ADRENAL, (rx, ry, rz), 15.0),
        Slot("adrenal_left", Organ.ADRENAL, (lx, ly, lz), 15.0),
        Slot("vertebra_upper", Organ.BONE, (0.0, spine, 30.0), 13.0),
        Slot("vertebra_lower", Organ.BONE, (0.0, spine, -25.0), 13.0),
        Slot("node_subcarinal", Organ.LYMPH_NODE, (-14.0, 28.0, 6.0), 16.0),
        Slot("node_right_paratracheal", Organ.LYMPH_NODE, (-14.0, 2.0, 36.0), 16.0),
        Slot("node_left_hilar", Organ.LYMPH_NODE, (24.0, -14.0, 36.0), 16.0),
    )


def in_liver(x: float, y: float, z: float) -> bool:
    """Whether a point lies in the liver ellipsoid."""
    (cx, cy, cz), (a, b, c) = LIVER_CENTRE_MM, LIVER_SEMI_AXES_MM
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0


def in_lung(anatomy: Anatomy, x: float, y: float, z: float) -> bool:
    """Whether a point lies in a lung (and not in the liver, which is drawn over the right base)."""
    s = lung_scale(z)
    la, lb = anatomy.lung_semi_axes_mm
    for side in (-1.0, 1.0):
        cx = side * anatomy.lung_offset_x_mm
        if s > 0 and ((x - cx) / (la * s)) ** 2 + ((y + 10.0) / (lb * s)) ** 2 <= 1.0:
            return not in_liver(x, y, z)
    return False


def organ_at(anatomy: Anatomy, x: float, y: float, z: float) -> Organ | None:
    """The organ a point of the patient frame lies in (lesion organs only), else ``None``."""
    spine = spine_y_mm(anatomy)
    if ((x / 19.0) ** 2 + ((y - spine) / 17.0) ** 2) <= 1.0:
        return Organ.BONE
    for cx, cy, cz in adrenal_centres_mm(anatomy):
        a, b, c = ADRENAL_SEMI_AXES_MM
        if ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0:
            return Organ.ADRENAL
    if in_liver(x, y, z):
        return Organ.LIVER
    if in_lung(anatomy, x, y, z):
        return Organ.LUNG
    return None
