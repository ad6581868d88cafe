#!/usr/bin/env bash
# Build the vendored TimescaleDB release and install it into Debian's PostgreSQL 15, once.
#
# A no-op (seconds) when this version's files are already installed. Otherwise, as root:
#   1. checks the tarball against vendor/timescaledb-<version>.tar.gz.sha256;
#   2. installs the build's Debian packages when missing (cmake, gcc, make,
#      postgresql-server-dev-15, libssl-dev);
#   3. builds out of tree in <cache>/timescaledb-<version>-pg15 (kept: a lost install is put back
#      by `make install` alone), telemetry compiled out;
#   4. `make install` into the PostgreSQL 15 tree (pg_config --pkglibdir and --sharedir).
# The local cluster (irtmon/stack/postgres.py) preloads the library when it is installed.
# Not root and not installed: says what to run and exits 1. IRTMON_TIMESCALEDB=off: nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=2.28.3
PG_MAJOR=15
TARBALL=vendor/timescaledb-$VERSION.tar.gz
PG_CONFIG=${IRTMON_PG_BIN_DIR:-/usr/lib/postgresql/$PG_MAJOR/bin}/pg_config
CACHE=${IRTMON_CACHE_DIR:-.irtmon/cache}
BUILD_ROOT=$CACHE/timescaledb-$VERSION-pg$PG_MAJOR

say() { printf '\033[1m[timescaledb]\033[0m %s\n' "$*"; }

if [ "${IRTMON_TIMESCALEDB:-auto}" = "off" ]; then
  exit 0
fi
if [ ! -x "$PG_CONFIG" ]; then
  say "$PG_CONFIG not found: install PostgreSQL $PG_MAJOR first (apt-get install postgresql-$PG_MAJOR)"
  exit 1
fi
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)

installed() {
  [ -f "$pkglibdir/timescaledb.so" ] &&
    [ -f "$pkglibdir/timescaledb-$VERSION.so" ] &&
    [ -f "$pkglibdir/timescaledb-tsl-$VERSION.so" ] &&
    [ -f "$sharedir/extension/timescaledb--$VERSION.sql" ] &&
    grep -q "default_version = '$VERSION'" "$sharedir/extension/timescaledb.control" 2>/dev/null
}

if installed; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  say "TimescaleDB $VERSION is not installed in PostgreSQL $PG_MAJOR ($pkglibdir)."
  say "Install it once as root: sudo bash scripts/bootstrap.sh (builds $TARBALL, a few minutes),"
  say "or set IRTMON_TIMESCALEDB=off to run on plain PostgreSQL tables."
  exit 1
fi

# one build at a time on this machine (parallel bootstraps wait, then find it installed)
mkdir -p "$CACHE"
exec 9>"$CACHE/timescaledb-build.lock"
flock 9
if installed; then
  exit 0
fi

started=$SECONDS
say "checking $TARBALL against its sha256"
(cd "$(dirname "$TARBALL")" && sha256sum --check --quiet "$(basename "$TARBALL").sha256") || {
  say "$TARBALL does not match $TARBALL.sha256: restore the unmodified release tarball"
  exit 1
}

need=()
for pkg in cmake gcc make "postgresql-server-dev-$PG_MAJOR" libssl-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing the build's packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

src=$BUILD_ROOT/timescaledb-$VERSION
build=$BUILD_ROOT/build
if [ ! -f "$build/.irtmon-built" ]; then
  say "building TimescaleDB $VERSION against PostgreSQL $PG_MAJOR in $BUILD_ROOT (first time only)"
  rm -rf "$BUILD_ROOT"
  mkdir -p "$BUILD_ROOT"
  tar -xzf "$TARBALL" -C "$BUILD_ROOT"
  cmake -S "$src" -B "$build" -DPG_CONFIG="$PG_CONFIG" -DCMAKE_BUILD_TYPE=Release \
    -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
    -DGENERATE_DOWNGRADE_SCRIPT=OFF -DUSE_TELEMETRY=OFF -DSEND_TELEMETRY_DEFAULT=OFF \
    >"$BUILD_ROOT/cmake.log" 2>&1 || {
    tail -30 "$BUILD_ROOT/cmake.log"
    say "cmake failed; the whole log is $BUILD_ROOT/cmake.log"
    exit 1
  }
  make -C "$build" -j"$(nproc)" >"$BUILD_ROOT/make.log" 2>&1 || {
    tail -30 "$BUILD_ROOT/make.log"
    say "the build failed; the whole log is $BUILD_ROOT/make.log"
    exit 1
  }
  touch "$build/.irtmon-built"
fi
make -C "$build" install >"$BUILD_ROOT/install.log" 2>&1 || {
  tail -30 "$BUILD_ROOT/install.log"
  say "make install failed; the whole log is $BUILD_ROOT/install.log"
  exit 1
}
if ! installed; then
  say "make install ran but $pkglibdir/timescaledb-$VERSION.so or its SQL is missing"
  exit 1
fi
say "TimescaleDB $VERSION installed into PostgreSQL $PG_MAJOR in $((SECONDS - started)) s"
