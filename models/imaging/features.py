"""A feature value with its unit and definition, as every imaging result carries them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Feature"]


@dataclass(frozen=True)
class Feature:
    """One computed feature: value, unit and the family it belongs to."""

    value: float
    unit: str
    family: str
    definition: str = ""
    series_uid: str = ""
    """The series it was computed on."""
    kev: float | None = None
    """The virtual monoenergetic energy of that series, for PCCT."""

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary."""
        return asdict(self)
