"""The repository's reference models: registered and promoted where the registry has none.

``reference_models/`` holds one version of each model irtmon scores with (the pathology model,
the CT virtual biopsy, the response model), trained on the virtual clinic by
``irtmon models reference`` and marked on their cards as not for clinical use. A fresh
deployment or the demo calls :func:`install_reference_models`: for each name that has no
promoted version, the reference folder is verified (weights against their recorded hash),
copied into the models folder, registered and promoted. A name that already has a promoted
model is left alone, so a site's own models are never replaced; only a promoted reference model
whose folder has gone missing is copied back to where it is registered.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg

from core.db.registry import ModelRef, model_ref, promote, register
from models.exceptions import ModelError
from models.registry import CARD, load_artifact
from schemas import ModelName

STORY = "v2"
"""Virtual-clinic story the reference models are trained on."""
INDEX = "reference.json"
"""The file in the reference folder listing the models, their hashes and how they were made."""
REFERENCE_NAMES: tuple[ModelName, ...] = (
    ModelName.PATHOLOGY,
    ModelName.CT_SIGNATURE,
    ModelName.RESPONSE,
)
"""In the order they are trained and registered (the response model names its virtual biopsy,
which must be registered first)."""
ACTOR = "reference-models"
RECIPE_DECLARATION = "response-v2-h"
"""The declared evaluation of the reference models' recipe (the same code and default
configuration, trained on more patients) whose numbers their cards quote
(:mod:`models.evaluation.evidence`). After a newer declared evaluation of the recipe, change it
and run ``irtmon models reference --evidence-only``."""


def recipe_results(repo: Path) -> Path:
    """The results file of :data:`RECIPE_DECLARATION` in the repository at ``repo``."""
    return repo / "docs" / "evaluation" / "results" / f"{RECIPE_DECLARATION}.json"


def reference_version(seed: int, patients: int) -> str:
    """The version of the reference models made from ``seed`` and ``patients``."""
    return f"ref-{STORY}-seed{seed}-n{patients}"


@dataclass(frozen=True)
class Installed:
    """What :func:`install_reference_models` did for one model name."""

    name: str
    version: str
    action: str  # "promoted" (installed now), "kept" (a promoted version was there) or
    # "restored" (the promoted reference model's folder was missing and was copied back)


def reference_folder(source: Path, name: str) -> Path:
    """The one version folder of ``name`` under ``source``; refused when there is none or
    several (the reference set holds exactly one version of each model)."""
    folders = sorted(p.parent for p in (source / name).glob(f"*/{CARD}"))
    if len(folders) != 1:
        raise ModelError(
            f"{source / name} holds {len(folders)} model versions, not one: retrain the "
            "reference models with `irtmon models reference --replace`"
        )
    return folders[0]


def install_reference_models(
    conn: psycopg.Connection, *, source: Path, models_dir: Path
) -> list[Installed]:
    """Register and promote the reference model of each name that has no promoted version (and
    copy a promoted reference model's folder back where it went missing).

    Parameters
    ----------
    conn
        Open connection (not committed here).
    source
        The reference folder (``reference_models/``: ``<name>/<version>/model.json``).
    models_dir
        The models folder the workers read; each reference folder is copied there
        (``<name>/<version>/``) and registered from there.

    Returns
    -------
    list of Installed
        One entry per model name, in registration order.

    Raises
    ------
    ModelError
        A reference folder is missing, corrupted (weights not matching their hash), or a folder
        of the same version in ``models_dir`` holds other weights.
    """
    done = []
    for name in REFERENCE_NAMES:
        current = model_ref(conn, name)
        if current is not None:
            done.append(Installed(str(name), current.version, _keep(current, source)))
            continue
        reference = load_artifact(reference_folder(source, str(name)))
        target = models_dir / str(name) / reference.version
        if not (target / CARD).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(reference.folder, target, dirs_exist_ok=True)
        installed = load_artifact(target, expected_sha256=reference.sha256)
        register(conn, installed)
        promote(conn, str(name), installed.version, actor=ACTOR)
        done.append(Installed(str(name), installed.version, "promoted"))
    return done


def _keep(current: ModelRef, source: Path) -> str:
    """Keep the promoted model; when it is this reference model and its folder is gone (the
    state folder was deleted while the database was kept elsewhere, as a root install keeps
    it), copy the reference folder back to where it is registered. Returns "kept" or
    "restored"."""
    if (current.folder / CARD).is_file():
        return "kept"
    reference = load_artifact(reference_folder(source, current.name))
    if (reference.version, reference.sha256) != (current.version, current.sha256):
        return "kept"  # a model of the site's own: not ours to put back
    current.folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(reference.folder, current.folder, dirs_exist_ok=True)
    load_artifact(current.folder, expected_sha256=current.sha256)
    return "restored"
