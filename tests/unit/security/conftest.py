from __future__ import annotations

from pathlib import Path

import pytest

from tests.tls import make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA and a certificate for 127.0.0.1/localhost (``server``)."""
    return make_certs(tmp_path_factory.mktemp("certs"), "server=DNS:localhost,IP:127.0.0.1")


@pytest.fixture(scope="session")
def ca_file(certs: Path) -> Path:
    return certs / "ca.crt"
