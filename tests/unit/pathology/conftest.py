"""Fixtures built from the virtual clinic's slide renderer: small slides, broken files, a model.

Slides are 1024 px (16 tiles of 256 px at 0.5 µm/px) so the unit tests stay fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from clinic.slides import render_slide, write_pyramid
from schemas.enums import ImmunePhenotype
from tests.unit.pathology.scanner import ihc_image, restain

SIZE = 1024
_TIL = {
    ImmunePhenotype.INFLAMED: (900.0, 500.0),
    ImmunePhenotype.EXCLUDED: (90.0, 700.0),
    ImmunePhenotype.DESERT: (25.0, 40.0),
}


def make_slide(folder: Path, phenotype: ImmunePhenotype, seed: int, scale: float = 1.0) -> Path:
    """Write a small slide with its tile truth; return its path."""
    intra, stromal = _TIL[phenotype]
    image, tiles, truth = render_slide(
        np.random.default_rng(seed), phenotype, intra * scale, stromal * scale, SIZE
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "slide.tiff"
    write_pyramid(path, image, description="test slide")
    tiles.to_parquet(folder / "slide.tiles.parquet", index=False)
    (folder / "til.txt").write_text(f"{truth.til_intratumoral_per_mm2}")
    return path


@pytest.fixture(scope="session")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slides")


@pytest.fixture(scope="session")
def inflamed_slide(slide_dir: Path) -> Path:
    return make_slide(slide_dir / "inflamed", ImmunePhenotype.INFLAMED, 11)


@pytest.fixture(scope="session")
def blank_slide(slide_dir: Path) -> Path:
    """A glass slide with one speck of tissue: almost nothing to analyse."""
    image = np.full((SIZE, SIZE, 3), 246, dtype=np.uint8)
    image[500:540, 500:540] = (180, 90, 170)
    path = slide_dir / "blank" / "slide.tiff"
    write_pyramid(path, image)
    return path


@pytest.fixture(scope="session")
def ihc_slide(slide_dir: Path) -> Path:
    """Real colon tissue stained by immunohistochemistry (scikit-image's sample), as a slide."""
    path = slide_dir / "ihc" / "slide.tiff"
    write_pyramid(path, ihc_image(SIZE), description="IHC, DAB and haematoxylin")
    return path


@pytest.fixture(scope="session")
def overstained_slide(slide_dir: Path) -> Path:
    """A clinic H&E slide with every stain 1.6 times as dense: still H&E, far from training."""
    image, _, _ = render_slide(
        np.random.default_rng(77), ImmunePhenotype.INFLAMED, 900.0, 500.0, SIZE
    )
    path = slide_dir / "overstained" / "slide.tiff"
    write_pyramid(path, restain(image, 1.6))
    return path


@pytest.fixture(scope="session")
def corrupt_slide(slide_dir: Path, inflamed_slide: Path) -> Path:
    """A real slide truncated to a third of its bytes."""
    data = inflamed_slide.read_bytes()
    path = slide_dir / "corrupt.tiff"
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.fixture(scope="session")
def not_a_slide(slide_dir: Path) -> Path:
    path = slide_dir / "notes.tiff"
    path.write_text("this is a text file, not a whole-slide image\n")
    return path


@pytest.fixture(scope="session")
def svs_slide(slide_dir: Path) -> Path:
    """An Aperio SVS-style file (baseline, thumbnail, reduced level; MPP in the description)."""
    image, _, _ = render_slide(
        np.random.default_rng(5), ImmunePhenotype.EXCLUDED, 90.0, 700.0, SIZE
    )
    head = "Aperio Image Library v12.0.0\r\n"
    path = slide_dir / "svs" / "slide.svs"
    path.parent.mkdir(parents=True)
    opts = {"photometric": "rgb", "metadata": None}
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            image,
            tile=(256, 256),
            compression="jpeg",
            description=head + f"{SIZE}x{SIZE} (256x256) JPEG/RGB Q=85|AppMag = 20|MPP = 0.5",
            **opts,
        )
        tif.write(image[::8, ::8].copy(), description=head + "thumbnail", **opts)
        tif.write(
            image[::4, ::4].copy(), tile=(256, 256), compression="jpeg", description=head, **opts
        )
    return path


@pytest.fixture(scope="session")
def cohort_slides(slide_dir: Path) -> list[tuple[Path, ImmunePhenotype, str]]:
    """Nine small slides, three per phenotype, each its own patient."""
    out = []
    for k, ph in enumerate(ImmunePhenotype):
        for j in range(3):
            folder = slide_dir / "cohort" / f"p{k}{j}"
            out.append((make_slide(folder, ph, 100 + 10 * k + j, 0.8 + 0.2 * j), ph, f"p{k}{j}"))
    return out


@pytest.fixture(scope="session")
def bags(cohort_slides: list[tuple[Path, ImmunePhenotype, str]]) -> list:
    from models.pathology import HandcraftedEncoder, SlideRecord, TileSpec
    from models.pathology.train import encode_slide

    spec = HandcraftedEncoder().spec()
    result = []
    for path, ph, patient in cohort_slides:
        til = float((path.parent / "til.txt").read_text())
        record = SlideRecord(str(path), patient, path, ph, til)
        result.append(encode_slide(record, spec, TileSpec()))
    return result


@pytest.fixture(scope="session")
def tiny_fit(bags: list):
    from models.pathology import TrainConfig, fit_mil

    return fit_mil(bags, bags[::3], TrainConfig(seed=3, max_epochs=15, patience=15))


def _save_model(folder: Path, fit, bags: list | None) -> Path:
    from models.pathology import HandcraftedEncoder, TileSpec
    from models.pathology.train import (
        MODEL_NAME,
        WEIGHTS_FILE,
        class_prior,
        ood_reference,
        save_checkpoint,
    )
    from models.registry import save_artifact

    weights = save_checkpoint(
        folder / WEIGHTS_FILE,
        fit.model,
        HandcraftedEncoder(),
        TileSpec(),
        ood=ood_reference(bags) if bags else None,
        prior=class_prior(bags) if bags else None,
    )
    artifact = save_artifact(folder, MODEL_NAME, "0.0.1-test", weights)
    assert artifact.folder is not None
    return artifact.folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_fit, bags: list) -> Path:
    """A quickly trained pathology-mil artefact (a few epochs on the nine slides), saved as
    training saves it: with the training slides' OOD reference and phenotype frequencies."""
    return _save_model(tmp_path_factory.mktemp("models"), tiny_fit, bags)


@pytest.fixture(scope="session")
def legacy_model(tmp_path_factory: pytest.TempPathFactory, tiny_fit) -> Path:
    """The same model saved as before the OOD reference existed (no reference, no prior)."""
    return _save_model(tmp_path_factory.mktemp("legacy-models"), tiny_fit, None)
