"""Model artefacts: saved with a card, refused on load when the hash or version is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.exceptions import ModelError
from models.registry import latest_version, load_artifact, save_artifact


def weights(tmp_path: Path, content: bytes = b"weights-v1") -> Path:
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    return path


def test_saved_artifact_loads_and_verifies(tmp_path: Path) -> None:
    art = save_artifact(
        tmp_path / "models",
        "response",
        "1.0.0",
        weights(tmp_path),
        metrics={"auc": 0.9},
        training_data_hash="abc",
        card="A test model.",
    )
    again = load_artifact(art.folder)
    assert again.sha256 == art.sha256 and again.metrics == {"auc": 0.9}
    assert latest_version(tmp_path / "models", "response").version == "1.0.0"
    with pytest.raises(ValueError, match="bump the version"):
        save_artifact(tmp_path / "models", "response", "1.0.0", weights(tmp_path))


def test_wrong_hash_is_refused(tmp_path: Path) -> None:
    art = save_artifact(tmp_path / "m", "response", "1", weights(tmp_path))
    art.weights_path.write_bytes(b"tampered")
    with pytest.raises(ModelError, match="do not match their recorded hash"):
        load_artifact(art.folder)


def test_registered_hash_must_match(tmp_path: Path) -> None:
    art = save_artifact(tmp_path / "m", "response", "1", weights(tmp_path))
    with pytest.raises(ModelError, match="not the registered model"):
        load_artifact(art.folder, expected_sha256="0" * 64)


def test_missing_version_is_refused(tmp_path: Path) -> None:
    art = save_artifact(tmp_path / "m", "response", "1", weights(tmp_path))
    card = json.loads((art.folder / "model.json").read_text())
    del card["version"]
    (art.folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="no 'version'"):
        load_artifact(art.folder)


def test_missing_weights_and_bad_names(tmp_path: Path) -> None:
    art = save_artifact(tmp_path / "m", "response", "1", weights(tmp_path))
    art.weights_path.unlink()
    with pytest.raises(ModelError, match="missing"):
        load_artifact(art.folder)
    with pytest.raises(ModelError, match=r"model\.json is missing"):
        load_artifact(tmp_path)
    with pytest.raises(ValueError, match="version"):
        save_artifact(tmp_path / "m", "response", "no spaces", weights(tmp_path))
