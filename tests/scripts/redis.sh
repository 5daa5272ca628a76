#!/usr/bin/env bash
# A throwaway Redis server for the test suites (no systemd, nothing outside DIR).
#
#   tests/scripts/redis.sh start DIR   -> prints REDIS_URL=redis://127.0.0.1:PORT/0 on stdout
#   tests/scripts/redis.sh stop DIR
#
# Installs Debian's redis-server with apt-get if it is missing, starts it on a free port on
# 127.0.0.1 with its pid file and log in DIR and no persistence (the suites want a clean server).
# Running `start` again on a running server just prints the URL again; on a stopped one it starts
# it on the same port as before (a test's outage: the gateway's URL stays valid).
set -euo pipefail

die() { echo "redis.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 start|stop DIR"
cmd=$1
dir=$2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# apt_install, free_port
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_installed() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
    apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
}

is_running() {
    [ -f "$dir/port" ] && redis-cli -h 127.0.0.1 -p "$(cat "$dir/port")" ping 2>/dev/null | grep -q PONG
}

print_url() { echo "REDIS_URL=redis://127.0.0.1:$(cat "$dir/port")/0"; }

start() {
    ensure_installed
    if is_running; then print_url; return 0; fi
    local port
    if [ -s "$dir/port" ]; then
        port=$(cat "$dir/port")
    else
        port=$(free_port)
    fi
    echo "$port" > "$dir/port"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --save '' --appendonly no >/dev/null
    for _ in $(seq 1 100); do
        if is_running; then print_url; return 0; fi
        sleep 0.1
    done
    cat "$dir/redis.log" >&2 || true
    die "redis-server did not answer on port $port"
}

stop() {
    if is_running; then
        redis-cli -h 127.0.0.1 -p "$(cat "$dir/port")" shutdown nosave >/dev/null 2>&1 || true
    fi
    for _ in $(seq 1 50); do
        [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$(cat "$dir/redis.pid")" 2>/dev/null || true
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop DIR" ;;
esac
