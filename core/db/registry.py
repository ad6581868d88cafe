"""The ``model_registry`` table: which model versions exist and which one is promoted.

:func:`model_ref` is the one lookup of a registered model (the promoted version of a name, or a
given version); every part of irtmon that scores with a model goes through it, with the names of
:class:`schemas.ModelName`. Functions take an open connection and never commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.db import audit
from models.exceptions import ModelError
from models.registry import ModelArtifact, load_artifact
from schemas import ModelName


@dataclass(frozen=True)
class ModelRef:
    """A registered model version: artefact folder, registered hash, version."""

    name: str
    version: str
    folder: Path
    sha256: str

    def as_tuple(self) -> tuple[Path, str, str]:
        return (self.folder, self.sha256, self.version)

    def load(self) -> ModelArtifact:
        """The artefact, verified against the registered hash and version."""
        artifact = load_artifact(self.folder, expected_sha256=self.sha256)
        if artifact.version != self.version:
            raise ModelError(
                f"{self.folder} holds version {artifact.version}, registry says {self.version}"
            )
        return artifact


@dataclass(frozen=True)
class ResponseModels:
    """What a timepoint is scored with (any may be None: that score is then not produced)."""

    signature: ModelRef | None
    response: ModelRef | None
    response_signature: ModelRef | None


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity as None: PostgreSQL's JSON has neither (a bootstrap
    on a handful of held-out patients can give a NaN standard error)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def register(conn: psycopg.Connection, artifact: ModelArtifact) -> None:
    """Record an artefact (idempotent for the same name, version and hash)."""
    row = conn.execute(
        "SELECT sha256 FROM model_registry WHERE name = %s AND version = %s",
        (artifact.name, artifact.version),
    ).fetchone()
    if row is not None:
        if row[0] != artifact.sha256:
            raise ModelError(
                f"{artifact.name} {artifact.version} is already registered with another hash; "
                "bump the version"
            )
        return
    conn.execute(
        """
        INSERT INTO model_registry (name, version, sha256, path, training_data_hash, metrics, card)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        """,
        (
            artifact.name,
            artifact.version,
            artifact.sha256,
            str(artifact.folder),
            artifact.training_data_hash,
            Jsonb(_json_safe(artifact.metrics)),
            artifact.card,
        ),
    )


def promote(conn: psycopg.Connection, name: str, version: str, actor: str = "cli") -> None:
    """Make ``version`` the one inference loads; the previous promotion ends. Audited."""
    exists = conn.execute(
        "SELECT 1 FROM model_registry WHERE name = %s AND version = %s", (name, version)
    ).fetchone()
    if exists is None:
        raise ValueError(f"model {name} {version} is not registered")
    conn.execute(
        "UPDATE model_registry SET promoted = false, promoted_at = NULL "
        "WHERE name = %s AND promoted",
        (name,),
    )
    conn.execute(
        "UPDATE model_registry SET promoted = true, promoted_at = now() "
        "WHERE name = %s AND version = %s",
        (name, version),
    )
    audit.write(
        conn,
        actor=actor,
        action="promote",
        entity="model",
        entity_id=f"{name}:{version}",
        detail={"name": name, "version": version},
    )


def models(conn: psycopg.Connection, name: str | None = None) -> list[dict[str, Any]]:
    """Registered models by name, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT name, version, sha256, path, training_data_hash, metrics, card, created_at, "
            "promoted, promoted_at FROM model_registry WHERE %s::text IS NULL OR name = %s "
            "ORDER BY name, created_at DESC, version DESC",
            (name, name),
        )
        return cur.fetchall()


def model_ref(
    conn: psycopg.Connection, name: ModelName | str, version: str | None = None
) -> ModelRef | None:
    """The given version of ``name``, or its promoted one (None when none is promoted).

    A given version that is not registered is refused with :class:`ModelError`.
    """
    name = str(name)
    if version is None:
        row = conn.execute(
            "SELECT version, path, sha256 FROM model_registry WHERE name = %s AND promoted",
            (name,),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT version, path, sha256 FROM model_registry WHERE name = %s AND version = %s",
            (name, version),
        ).fetchone()
        if row is None:
            raise ModelError(f"model {name} {version} is not registered")
    return None if row is None else ModelRef(name, row[0], Path(row[1]), row[2])


def promoted(conn: psycopg.Connection, name: ModelName | str) -> ModelRef:
    """The promoted version of ``name``; refused with a message saying how to make one."""
    ref = model_ref(conn, name)
    if ref is None:
        command = "pathology" if str(name) == ModelName.PATHOLOGY else str(name)
        raise ModelError(
            f"no promoted {name} model: train and promote one "
            f"(irtmon train {command} --register --promote, or irtmon models promote {name} "
            "VERSION); the event can be replayed then"
        )
    return ref


def response_models(
    conn: psycopg.Connection,
    signature_version: str | None = None,
    response_version: str | None = None,
) -> ResponseModels:
    """The promoted (or given) virtual biopsy and response model, and the virtual biopsy the
    response model was trained with (named on its card; it must be registered)."""
    sig = model_ref(conn, ModelName.CT_SIGNATURE, signature_version)
    resp = model_ref(conn, ModelName.RESPONSE, response_version)
    resp_sig = None
    if resp is not None:
        pinned = load_artifact(resp.folder, resp.sha256).extra.get("ct_signature") or {}
        if pinned.get("version"):
            resp_sig = model_ref(conn, ModelName.CT_SIGNATURE, pinned["version"])
            if resp_sig is not None and resp_sig.sha256 != pinned.get("sha256"):
                raise ModelError(
                    f"response {resp.version} was trained with ct-signature "
                    f"{pinned['version']} of another hash than the registered one"
                )
    return ResponseModels(sig, resp, resp_sig or sig)
