#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suites (no systemd, no root-owned cluster).
#
#   tests/scripts/postgres.sh start DIR   -> prints DATABASE_URL=postgres://... on stdout
#   tests/scripts/postgres.sh stop DIR
#
# Installs PostgreSQL with apt-get if initdb/pg_ctl are missing, initialises a cluster in DIR
# (owned by the `postgres` user when run as root: PostgreSQL refuses to run as root), starts it
# on a free port on 127.0.0.1 with its unix socket in DIR, and creates the database `pdndgw`.
# Running `start` again on a running cluster just prints the URL again.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }
# apt_install, free_port
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -eq 2 ] || die "usage: $0 start|stop DIR"
cmd=$1
dir=$2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data="$dir/data"
db=pdndgw

find_bin() {
    local name=$1 candidate
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        if [ -x "$candidate/$name" ]; then echo "$candidate/$name"; return 0; fi
    done
    return 1
}

ensure_installed() {
    if find_bin initdb >/dev/null && find_bin pg_ctl >/dev/null; then return 0; fi
    [ "$(id -u)" -eq 0 ] || die "PostgreSQL is not installed and installing it needs root"
    apt_install postgresql
    find_bin initdb >/dev/null || die "initdb still missing after apt-get install"
}

# Runs a command as the cluster owner: ourselves, or `postgres` when we are root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /bin/bash postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}


print_url() {
    local port
    port=$(cat "$dir/port")
    echo "DATABASE_URL=postgres://postgres@127.0.0.1:${port}/${db}"
}

is_running() {
    [ -f "$data/postmaster.pid" ] && as_owner "$(find_bin pg_ctl)" -D "$data" status >/dev/null 2>&1
}

start() {
    ensure_installed
    local initdb pg_ctl psql port
    initdb=$(find_bin initdb)
    pg_ctl=$(find_bin pg_ctl)
    psql=$(find_bin psql) || die "psql not found"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /bin/bash postgres
        chown postgres "$dir"
        chmod 755 "$dir"
    fi
    if is_running; then
        print_url
        return 0
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        as_owner "$initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
    # A restart keeps its port, so clients (and tests of an outage) reconnect to the same URL.
    if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
    echo "$port" >"$dir/port"
    as_owner "$pg_ctl" -D "$data" -l "$dir/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c max_connections=200" \
        start >&2 || { cat "$dir/server.log" >&2; die "pg_ctl start failed"; }
    if ! as_owner "$psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" postgres | grep -q 1; then
        as_owner "$psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE $db" postgres >&2
    fi
    print_url
}

stop() {
    if [ -f "$data/postmaster.pid" ]; then
        local pg_ctl
        pg_ctl=$(find_bin pg_ctl) || die "pg_ctl not found"
        as_owner "$pg_ctl" -D "$data" -m fast -w stop >&2 || true
    fi
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop DIR" ;;
esac
