"""Model artefacts on disk: weights plus a ``model.json`` card, verified by sha256 on load.

A trained model lives in ``<models_dir>/<name>/<version>/`` with its weights file and
``model.json`` (name, version, sha256 of the weights, training-data hash, metrics, card text,
creation time). :func:`load_artifact` refuses a folder whose weights do not match the recorded
hash, or whose card lacks a name or version, with :class:`~models.exceptions.ModelError`.

The database's ``model_registry`` table records the same fields and which version is promoted
(``core.db.registry``); this module stays free of database code.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.exceptions import ModelError

CARD = "model.json"
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelArtifact:
    """A model on disk, as its card describes it."""

    name: str
    version: str
    weights: str  # file name inside the folder
    sha256: str
    created_at: str
    training_data_hash: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    card: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None

    @property
    def weights_path(self) -> Path:
        if self.folder is None:
            raise ModelError(f"model {self.name} {self.version} has no folder")
        return self.folder / self.weights


def save_artifact(
    models_dir: Path,
    name: str,
    version: str,
    weights_file: Path,
    *,
    training_data_hash: str | None = None,
    metrics: dict[str, Any] | None = None,
    card: str = "",
    extra: dict[str, Any] | None = None,
) -> ModelArtifact:
    """Copy ``weights_file`` into ``models_dir/name/version/`` and write its card."""
    if not _VERSION_RE.match(version):
        raise ValueError(f"model version {version!r} must be 1-64 characters of [0-9A-Za-z._+-]")
    if not re.match(r"^[a-z][a-z0-9_-]{0,63}$", name):
        raise ValueError(f"model name {name!r} must be lower-case letters, digits, _ or -")
    folder = models_dir / name / version
    if (folder / CARD).exists():
        raise ValueError(f"{folder} already holds model {name} {version}; bump the version")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / weights_file.name
    if weights_file.resolve() != target.resolve():
        shutil.copyfile(weights_file, target)
    artifact = ModelArtifact(
        name=name,
        version=version,
        weights=target.name,
        sha256=sha256_file(target),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training_data_hash=training_data_hash,
        metrics=metrics or {},
        card=card,
        extra=extra or {},
    )
    data = asdict(artifact)
    data.pop("folder")
    (folder / CARD).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return ModelArtifact(**{**data, "folder": folder})


def load_artifact(folder: Path, expected_sha256: str | None = None) -> ModelArtifact:
    """Read and verify a model folder; ``ModelError`` says what is wrong with it."""
    card_path = folder / CARD
    if not card_path.is_file():
        raise ModelError(f"{folder} is not a model folder: {CARD} is missing")
    try:
        data = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{card_path} is unreadable: {err}") from err
    for key in ("name", "version", "weights", "sha256"):
        if not data.get(key):
            raise ModelError(f"{card_path} has no {key!r}; the model cannot be trusted")
    if not _VERSION_RE.match(str(data["version"])):
        raise ModelError(f"{card_path} has an invalid version {data['version']!r}")
    artifact = ModelArtifact(
        **{k: v for k, v in data.items() if k in ModelArtifact.__dataclass_fields__}, folder=folder
    )
    weights = artifact.weights_path
    if not weights.is_file():
        raise ModelError(f"weights file {weights} of {artifact.name} {artifact.version} is missing")
    actual = sha256_file(weights)
    if actual != artifact.sha256:
        raise ModelError(
            f"weights of {artifact.name} {artifact.version} do not match their recorded hash "
            f"(card {artifact.sha256[:12]}, file {actual[:12]}): the file was changed or corrupted"
        )
    if expected_sha256 is not None and expected_sha256 != actual:
        raise ModelError(
            f"{artifact.name} {artifact.version} is not the registered model "
            f"(registry {expected_sha256[:12]}, file {actual[:12]})"
        )
    return artifact


def amend_card(
    folder: Path,
    *,
    card_note: str = "",
    extra: dict[str, Any] | None = None,
    section: str | None = None,
) -> ModelArtifact:
    """Add a sentence to an artefact's card text and keys to its ``extra``, weights untouched.

    The weights' hash is what identifies a model, so its version and registration stay valid;
    used to mark the reference models (what they were trained on, that they are not for
    clinical use) and to write the evidence behind a model into its card
    (:mod:`models.evaluation.evidence`). With ``section`` (the first word of ``card_note``),
    the card's text from an earlier ``section`` to its end is replaced by ``card_note``.
    The folder is verified first (:func:`load_artifact`).
    """
    load_artifact(folder)
    card_path = folder / CARD
    data = json.loads(card_path.read_text())
    text = data.get("card", "")
    if section and section in text:
        data["card"] = text[: text.index(section)].rstrip()
    if card_note and card_note not in data.get("card", ""):
        data["card"] = f"{data.get('card', '').rstrip()} {card_note}".strip()
    data["extra"] = {**(data.get("extra") or {}), **(extra or {})}
    card_path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return load_artifact(folder)


def latest_version(models_dir: Path, name: str) -> ModelArtifact | None:
    """The most recently created artefact of ``name`` on disk, or None."""
    folder = models_dir / name
    cards = []
    for card in folder.glob(f"*/{CARD}") if folder.is_dir() else []:
        try:
            cards.append((json.loads(card.read_text()).get("created_at", ""), card.parent))
        except (OSError, json.JSONDecodeError):
            continue
    if not cards:
        return None
    return load_artifact(max(cards)[1])
