#!/usr/bin/env bash
# A private PostgreSQL server for tests and benchmarks: Debian's package
# (installed when missing), a fresh cluster in a temporary directory that
# listens only on a Unix socket there, stopped when the calling shell exits.
#
# Sourced (by tests/run.sh):      source scripts/postgres.sh
#   sets JOURNEYD_TEST_POSTGRES to the server's URL (trust auth, socket only).
# Run by hand:                    scripts/postgres.sh
#   starts one, prints its URL and waits; Ctrl-C stops it and removes it.
#
# initdb and pg_ctl refuse to run as root: as root they run as the package's
# `postgres` user.

_pg_main() {
    if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
        local as_root=()
        [ "$(id -u)" -eq 0 ] || as_root=(sudo)
        "${as_root[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
            postgresql >/dev/null
    fi
    PG_BIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
    PG_DIR=$(mktemp -d /tmp/journeyd-pg.XXXXXX)
    local as_owner=()
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$PG_DIR"
        as_owner=(runuser -u postgres --)
    fi
    "${as_owner[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U journeyd --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log"
    # Tuned for a test box: the WAL is still written and fsynced (a commit
    # is durable, as in production); more connections for several nodes.
    "${as_owner[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w start \
        -o "-c listen_addresses='' -c unix_socket_directories='$PG_DIR' -c max_connections=200" \
        >/dev/null
    PG_STOP=("${as_owner[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop)
    local socket
    socket=$(printf '%s' "$PG_DIR" | sed 's|/|%2F|g')
    JOURNEYD_TEST_POSTGRES="postgresql://journeyd@$socket/postgres"
    export JOURNEYD_TEST_POSTGRES PG_DIR
    "$PG_BIN/postgres" --version
}

_pg_stop() {
    "${PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    _pg_main
    trap _pg_stop EXIT
    echo "PostgreSQL is up: $JOURNEYD_TEST_POSTGRES"
    echo "(data and socket in $PG_DIR; Ctrl-C stops it)"
    sleep infinity
else
    step "setup: a private PostgreSQL server on a Unix socket (Debian package postgresql)"
    _pg_main
    trap _pg_stop EXIT
fi
