"""The local PostgreSQL works wherever the repository is cloned: as root, under a 0700 folder.

PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` OS user, who cannot
traverse a 0700 folder such as /root. The cluster then lives in a system folder of its own,
stable per state folder (irtmon.stack.postgres.cluster_root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from core.db import connect, migrate
from core.db.migrate import discover
from irtmon.stack import postgres
from irtmon.stack.private import private_settings
from tests.conftest import REPO

pytestmark = pytest.mark.integration

NOT_ROOT = (
    "only root has this problem: as root PostgreSQL runs as the postgres OS user, who cannot "
    "traverse a 0700 folder; as any other user the cluster runs as that user in the state folder"
)


@pytest.fixture
def private_parent(tmp_path: Path) -> Path:
    """A folder of mode 0700, as /root is: the postgres OS user cannot traverse it."""
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT)
    folder = tmp_path / f"home-{uuid.uuid4().hex[:6]}"
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def test_postgres_starts_and_migrates_under_a_0700_folder(private_parent: Path) -> None:
    state = private_parent / "clone" / ".irtmon"
    settings = private_settings(state, REPO / ".irtmon" / "cache")
    user = pwd.getpwnam(settings.pg_os_user)
    blocked = subprocess.run(
        ["runuser", "-u", settings.pg_os_user, "--", "test", "-x", str(state)],
        capture_output=True,
    )
    assert blocked.returncode != 0, "the postgres OS user should not reach the state folder"
    root = postgres.paths(settings).root
    try:
        postgres.start(settings)
        assert root.parent == postgres.SYSTEM_ROOT and not root.is_relative_to(state)
        info = root.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, 0o700)
        assert (root / "state_dir").read_text().strip() == str(state.resolve())
        with connect(settings, autocommit=True) as conn:
            report = migrate(conn, settings.timescaledb)
            assert report.applied == [
                m.filename for m in discover() if m.flavour in ("common", report.flavour.value)
            ]
            conn.execute(
                "INSERT INTO patients (pseudonym, first_seen_at) VALUES (%s, now())",
                ("psn-0123456789abcdef",),
            )

        # a restart finds the same cluster and its data
        assert postgres.stop(settings)
        postgres.start(settings)
        assert postgres.paths(settings).root == root
        with connect(settings, autocommit=True) as conn:
            assert migrate(conn, settings.timescaledb).applied == []
            assert conn.execute("SELECT count(*) FROM patients").fetchone() == (1,)
    finally:
        postgres.delete_cluster(settings)
    assert not root.exists()


def test_private_clusters_are_pruned_once_their_state_folder_is_gone(
    private_parent: Path,
) -> None:
    kept_state = private_parent / "kept"
    gone_state = private_parent / "gone"
    kept = private_settings(kept_state, REPO / ".irtmon" / "cache")
    gone = private_settings(gone_state, REPO / ".irtmon" / "cache")
    gone_root = postgres.paths(gone).root
    try:
        postgres.start(gone)
        assert postgres.stop(gone)
        postgres.start(kept)
        shutil.rmtree(gone_state)
        removed = postgres.prune_private()
        assert gone_root in removed and not gone_root.exists()
        # a running stack and one whose folder is still there are left alone
        assert postgres.paths(kept).root not in removed
        assert postgres.running_pid(kept) is not None
    finally:
        postgres.delete_cluster(kept)
        shutil.rmtree(gone_root, ignore_errors=True)
