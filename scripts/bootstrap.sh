#!/usr/bin/env bash
# Install what irtmon needs on a fresh machine, idempotently:
#   - Debian packages (PostgreSQL 15 server, JDK 17, Maven, Orthanc with its Python and
#     DICOMweb plugins, dcmtk) when missing (needs root);
#   - TimescaleDB, built once from the vendored release (vendor/) and installed into
#     PostgreSQL 15 when missing (needs root; scripts/build-timescaledb.sh; skipped with
#     IRTMON_TIMESCALEDB=off);
#   - the Python virtual environment .venv with pinned dependencies (constraints.txt),
#     installed by uv (pinned below; IRTMON_INSTALLER=pip for pip).
# The Kafka broker's jars are resolved by `irtmon stack up` on first start (mvn, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

need_apt=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql-15)
command -v java >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v runuser >/dev/null || need_apt+=(util-linux)
command -v dciodvfy >/dev/null || need_apt+=(dicom3tools)   # DICOM validator for the tests
[ -x /usr/bin/chromium ] || need_apt+=(chromium)             # browser tests of the app
[ -x /usr/sbin/Orthanc ] || need_apt+=(orthanc)              # the PACS (stack up --with-pacs)
[ -f /usr/share/orthanc/plugins/libOrthancPython.so ] || need_apt+=(orthanc-python)
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need_apt+=(orthanc-dicomweb)
command -v storescu >/dev/null || need_apt+=(dcmtk)          # the scanner: storescu
for extra in ${IRTMON_APT_EXTRA:-}; do need_apt+=("$extra"); done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing system packages: ${need_apt[*]}; install them as root (apt-get install ${need_apt[*]})"
    exit 1
  fi
  say "installing system packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

bash scripts/build-timescaledb.sh

PY=${PYTHON:-python3.11}
UV_VERSION=0.13.8   # the installer (PyPI: uv), pinned like everything else
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.irtmon-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  # uv installs the same pins as pip in less than half the time (parallel downloads: torch and
  # its CUDA libraries are ~4 GB), from its own small environment so that .venv holds only the
  # pins. It reads the same index as pip (PIP_INDEX_URL) and the system's certificates.
  # IRTMON_INSTALLER=pip installs with pip instead.
  if [ "${IRTMON_INSTALLER:-uv}" = uv ]; then
    if [ ! -x .irtmon/tools/bin/uv ]; then
      say "installing the installer: uv $UV_VERSION (into .irtmon/tools)"
      "$PY" -m venv .irtmon/tools
      .irtmon/tools/bin/python -m pip install -q "uv==$UV_VERSION"
    fi
    say "installing Python dependencies (pinned by constraints.txt) with uv"
    if [ -n "${PIP_INDEX_URL:-}" ]; then export UV_DEFAULT_INDEX="${UV_DEFAULT_INDEX:-$PIP_INDEX_URL}"; fi
    if [ -n "${PIP_CERT:-}" ]; then export SSL_CERT_FILE="${SSL_CERT_FILE:-$PIP_CERT}"; fi
    UV_NATIVE_TLS=1 .irtmon/tools/bin/uv pip install -q --python .venv/bin/python \
      -c constraints.txt -e ".[dev]"
  else
    say "installing Python dependencies (pinned by constraints.txt) with pip"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  fi
  touch "$stamp"
fi

say "ready"
