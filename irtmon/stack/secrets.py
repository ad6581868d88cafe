"""The compose deployment's secrets: one file each, given to the services that need them as
compose ``secrets:`` (mounted at ``/run/secrets/<name>``), never as plain environment.

``irtmon stack secrets DIR`` writes the missing ones (random, URL-safe, no trailing newline:
Kafka reads its password files byte for byte), in a folder only its owner may enter; each file
itself is world-readable, because compose bind-mounts it as it is and the services run as
their own users (the folder's mode keeps everyone else out on the host).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from irtmon.stack.kafka_security import ROLES, password_secret

COMPOSE_SECRETS: dict[str, str] = {
    "db_owner_password": "the database owner (migrations, `irtmon users`), PostgreSQL superuser",
    "db_worker_password": "the workers' login role `worker` (member of irtmon_worker)",
    "db_app_password": "the app's login role `app` (member of irtmon_app)",
    "pseudonym_key": "the keyed-hash pseudonym key (the PACS plugin, the publishing tools)",
    "pacs_password": "Orthanc's REST/DICOMweb user (the workers, the plugin's Orthanc)",
    **{password_secret(role): f"Kafka principal irtmon-{role}" for role in ROLES},
}
"""Every secret of ``docker/compose.yaml`` and what it is for."""


def write_secrets(folder: Path, nbytes: int = 32) -> list[str]:
    """Create the missing secret files in ``folder`` (mode 0700); return the names written.
    Existing files are kept (rotating one is deleting it and re-running, then restarting)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    written = []
    for name in COMPOSE_SECRETS:
        path = folder / name
        if path.exists():
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(nbytes))
        written.append(name)
    return written
