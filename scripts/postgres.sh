#!/usr/bin/env bash
# A private PostgreSQL server for tests and benchmarks: Debian's package
# (installed when missing), a fresh cluster in a temporary directory that
# listens only on a Unix socket there, stopped when the calling shell exits.
#
# Sourced (by tests/run.sh):      source scripts/postgres.sh
#   sets JOURNEYD_TEST_POSTGRES to the server's URL (trust auth, socket only).
# Run by hand:                    scripts/postgres.sh
#   starts one, prints its URL and data directory and waits; Ctrl-C (or
#   SIGTERM) stops it and removes it.
# Stopped and started again:      scripts/postgres.sh stop|start DIR
#   the server in DIR, as its owner (the restart tests use this).
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
    # In the configuration file, so a plain `pg_ctl start` brings it back.
    printf "listen_addresses = ''\nunix_socket_directories = '%s'\nmax_connections = 200\n" \
        "$PG_DIR" >>"$PG_DIR/data/postgresql.conf"
    _pg_ctl "$PG_DIR" start
    PG_STOP=(_pg_ctl "$PG_DIR" stop)
    local socket
    socket=$(printf '%s' "$PG_DIR" | sed 's|/|%2F|g')
    JOURNEYD_TEST_POSTGRES="postgresql://journeyd@$socket/postgres"
    export JOURNEYD_TEST_POSTGRES PG_DIR
    "$PG_BIN/postgres" --version
}

# pg_ctl start|stop on the server in $1, as the owner of its files.
_pg_ctl() {
    local dir=$1 action=$2 as_owner=() bin
    bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
    [ "$(id -u)" -eq 0 ] && as_owner=(runuser -u postgres --)
    case $action in
        start) "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null ;;
        stop) "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
        *) echo "usage: scripts/postgres.sh stop|start DIR" >&2; return 2 ;;
    esac
}

_pg_stop() {
    "${PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}

if [ "${BASH_SOURCE[0]}" = "$0" ] && [ $# -eq 2 ]; then
    set -euo pipefail
    _pg_ctl "$2" "$1"
elif [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    _pg_main
    trap _pg_stop EXIT
    echo "PostgreSQL is up: $JOURNEYD_TEST_POSTGRES"
    echo "data and socket in: $PG_DIR"
    # In the background, so a signal is handled at once.
    sleep infinity &
    trap 'kill $! 2>/dev/null; exit 0' INT TERM
    wait $!
else
    step "setup: a private PostgreSQL server on a Unix socket (Debian package postgresql)"
    _pg_main
    trap _pg_stop EXIT
fi
