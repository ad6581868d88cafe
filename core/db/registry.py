"""The ``model_registry`` table: which model versions exist and which one is promoted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from models.exceptions import ModelError
from models.registry import ModelArtifact, load_artifact


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
            Jsonb(artifact.metrics),
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
    conn.execute(
        "INSERT INTO audit_log (actor, action, entity, entity_id, detail) "
        "VALUES (%s, 'promote', 'model', %s, %s)",
        (actor, f"{name}:{version}", Jsonb({"name": name, "version": version})),
    )


def models(conn: psycopg.Connection, name: str | None = None) -> list[dict[str, Any]]:
    """Registered models, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT name, version, sha256, path, training_data_hash, metrics, card, created_at, "
            "promoted, promoted_at FROM model_registry WHERE %s::text IS NULL OR name = %s "
            "ORDER BY name, created_at DESC",
            (name, name),
        )
        return cur.fetchall()


def load_promoted(conn: psycopg.Connection, name: str) -> ModelArtifact:
    """The promoted artefact of ``name``, verified against the registered hash."""
    row = conn.execute(
        "SELECT version, sha256, path FROM model_registry WHERE name = %s AND promoted",
        (name,),
    ).fetchone()
    if row is None:
        raise ModelError(
            f"no promoted version of model {name!r}: train and promote one "
            f"(irtmon models promote {name} VERSION)"
        )
    artifact = load_artifact(Path(row[2]), expected_sha256=row[1])
    if artifact.version != row[0]:
        raise ModelError(f"{row[2]} holds version {artifact.version}, registry says {row[0]}")
    return artifact
