"""analyse_slide: the pure function a worker calls in a process pool."""

from __future__ import annotations

import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from models.exceptions import InsufficientDataError, ModelError, UnreadableInputError
from models.pathology import PathologyResult, analyse_slide, clear_cache
from models.pathology.inference import _load_cached
from schemas.enums import ImmunePhenotype


def test_result(inflamed_slide: Path, tiny_model: Path, tmp_path: Path) -> None:
    res = analyse_slide(inflamed_slide, tiny_model, heatmap_path=tmp_path / "hm.png")
    assert isinstance(res.phenotype, ImmunePhenotype)
    assert set(res.probabilities) == {"inflamed", "excluded", "desert"}
    assert sum(res.probabilities.values()) == pytest.approx(1.0)
    assert res.til_score >= 0
    assert 0.0 <= res.entropy <= 1.0
    assert res.mc_dropout_std >= 0.0
    assert res.heatmap_png[:4] == b"\x89PNG"
    assert Path(res.heatmap_path or "").read_bytes() == res.heatmap_png
    prov = res.provenance
    assert (prov.model_name, prov.model_version) == ("pathology-mil", "0.0.1-test")
    assert prov.encoder == "handcrafted-hed-v1"
    assert prov.magnification == 20.0 and prov.tiles_used >= 4
    assert np.nansum(res.attention_grid) == pytest.approx(1.0, abs=1e-4)
    again = pickle.loads(pickle.dumps(res))
    assert again.to_dict() == res.to_dict()
    assert analyse_slide(inflamed_slide, tiny_model).probabilities == res.probabilities


def test_model_loaded_once_per_process(inflamed_slide: Path, tiny_model: Path) -> None:
    clear_cache()
    analyse_slide(inflamed_slide, tiny_model, mc_samples=0)
    analyse_slide(inflamed_slide, tiny_model, mc_samples=0)
    info = _load_cached.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_runs_in_a_process_pool(inflamed_slide: Path, tiny_model: Path) -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        res = pool.submit(analyse_slide, inflamed_slide, tiny_model, mc_samples=4).result()
    assert isinstance(res, PathologyResult)


def test_bad_slides(
    blank_slide: Path, corrupt_slide: Path, not_a_slide: Path, tiny_model: Path
) -> None:
    with pytest.raises(InsufficientDataError, match="insufficient tissue"):
        analyse_slide(blank_slide, tiny_model)
    for path in (corrupt_slide, not_a_slide):
        with pytest.raises(UnreadableInputError, match=path.name):
            analyse_slide(path, tiny_model)


def test_altered_or_missing_model(inflamed_slide: Path, tiny_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    weights = next(copy.glob("*.pt"))
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(ModelError, match="hash"):
        analyse_slide(inflamed_slide, copy)
    with pytest.raises(ModelError):
        analyse_slide(inflamed_slide, tmp_path / "absent")
    with pytest.raises(ModelError, match="not the registered model"):
        analyse_slide(inflamed_slide, tiny_model, expected_sha256="0" * 64)


def test_empty_glass_is_refused_not_called_desert(tmp_path: Path, tiny_model: Path) -> None:
    # the report's slide: 2048 px of scanner glass (64 tiles) at RGB about 244
    from clinic.slides import write_pyramid
    from tests.unit.pathology.scanner import empty_glass

    path = tmp_path / "glass.tiff"
    write_pyramid(path, empty_glass(2048, level=244.0, seed=9))
    with pytest.raises(InsufficientDataError, match="insufficient tissue: 0 tile"):
        analyse_slide(path, tiny_model)
