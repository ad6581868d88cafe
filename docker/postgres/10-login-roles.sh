#!/bin/sh
# First start of the database volume (docker-entrypoint-initdb.d): the login roles of the
# workers (`worker`) and the app (`app`), members of the group roles irtmon_worker and
# irtmon_app whose grants `irtmon db migrate` gives (schemas/migrations/0005_roles.sql). The
# owner (POSTGRES_USER) migrates; the services never use it. Passwords are compose secrets,
# passed to psql as variables (never on a command line, never printed).
set -eu
secrets=${SECRETS_DIR:-/run/secrets}
worker_password=$(cat "$secrets/db_worker_password")
app_password=$(cat "$secrets/db_app_password")
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
  --username "${POSTGRES_USER:?}" --dbname "${POSTGRES_DB:?}" \
  -v worker_password="$worker_password" -v app_password="$app_password" \
  -v worker_user="${IRTMON_DB_WORKER_USER:-worker}" -v app_user="${IRTMON_DB_APP_USER:-app}" <<'SQL'
SELECT 'CREATE ROLE irtmon_worker NOLOGIN'
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'irtmon_worker') \gexec
SELECT 'CREATE ROLE irtmon_app NOLOGIN'
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'irtmon_app') \gexec
SELECT format('CREATE ROLE %I LOGIN IN ROLE irtmon_worker', :'worker_user')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'worker_user') \gexec
SELECT format('CREATE ROLE %I LOGIN IN ROLE irtmon_app', :'app_user')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'worker_user', :'worker_password') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'app_user', :'app_password') \gexec
SQL
