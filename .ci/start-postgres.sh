#!/usr/bin/env bash
# Start a throwaway PostgreSQL for the library tests and print its URL on stdout (logs go to stderr).
#
#   export ALPHAOPT_TEST_PG_URL="$(bash .ci/start-postgres.sh)"   # start (or reuse) and print the URL
#   bash .ci/start-postgres.sh stop                               # stop it
#
# Idempotent: a second start reuses the running server. Runs as the `postgres` OS user (created if
# missing), trust auth, listening on 127.0.0.1 only. ALPHAOPT_PG_DIR (default /tmp/alphaopt-pg) holds
# the cluster; ALPHAOPT_PG_PORT (default 54329) is the first port tried.
set -euo pipefail

BASE="${ALPHAOPT_PG_DIR:-/tmp/alphaopt-pg}"
DATA="$BASE/data"
PORT_FILE="$BASE/port"
DB=alphaopt_test

log() { echo "start-postgres: $*" >&2; }

if ! command -v initdb >/dev/null 2>&1 && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  log "installing PostgreSQL from Debian's packages"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
INITDB="$(readlink -f "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")"
BIN="$(dirname "$INITDB")"

as_pg() { runuser -u postgres -- "$@"; }

if [ "${1:-start}" = stop ]; then
  if [ -f "$DATA/postmaster.pid" ]; then
    as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
  else
    log "not running"
  fi
  exit 0
fi

if ! id postgres >/dev/null 2>&1; then
  log "creating OS user postgres"
  useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
fi
mkdir -p "$BASE"
chown postgres:postgres "$BASE"
chmod 700 "$BASE"

if [ ! -s "$DATA/PG_VERSION" ]; then
  log "initdb $DATA"
  as_pg "$BIN/initdb" -D "$DATA" --username=postgres --auth=trust --encoding=UTF8 --locale=C >&2
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  PORT="$(cat "$PORT_FILE")"
  log "already running on port $PORT"
else
  PORT="${ALPHAOPT_PG_PORT:-54329}"
  while port_busy "$PORT"; do PORT=$((PORT + 1)); done
  log "starting on 127.0.0.1:$PORT"
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $BASE -c fsync=off" start >&2
  echo "$PORT" > "$PORT_FILE"
fi

if [ "$(as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB"
  log "created database $DB"
fi

echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/$DB"
