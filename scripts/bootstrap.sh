#!/usr/bin/env bash
# Install what irtmon needs on a fresh machine, idempotently:
#   - Debian packages (PostgreSQL 15 server, JDK 17, Maven, Orthanc with its Python and
#     DICOMweb plugins, dcmtk) when missing (needs root);
#   - TimescaleDB, built once from the vendored release (vendor/) and installed into
#     PostgreSQL 15 when missing (needs root; scripts/build-timescaledb.sh; skipped with
#     IRTMON_TIMESCALEDB=off);
#   - the Python virtual environment .venv with pinned dependencies (constraints.txt).
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
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.irtmon-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  say "installing Python dependencies (pinned by constraints.txt)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  touch "$stamp"
fi

say "ready"
