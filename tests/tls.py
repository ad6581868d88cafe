"""Certificates for tests, made by the same script as compose's ``certs`` service."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import REPO

CERTS_SCRIPT = REPO / "docker" / "certs.sh"


def make_certs(out: Path, *specs: str) -> Path:
    """Run ``docker/certs.sh out specs...`` (openssl); return ``out`` (``ca.crt`` and, per
    ``NAME=SANS``, ``NAME.crt``, ``NAME.key``, ``NAME.pem``)."""
    result = subprocess.run(
        ["sh", str(CERTS_SCRIPT), str(out), *specs], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return out
