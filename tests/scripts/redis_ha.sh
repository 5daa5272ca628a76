#!/usr/bin/env bash
# Throwaway highly available Redis deployments for the state store's tests (nothing outside DIR):
# a master + one replica watched by one Sentinel (master name `mymaster`), and a Cluster of
# three masters (no replicas), all on free ports of 127.0.0.1, without persistence.
#
#   tests/scripts/redis_ha.sh start DIR  -> prints, on stdout,
#       SENTINEL_URL=redis+sentinel://127.0.0.1:PORT/mymaster/0
#       CLUSTER_URL=redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
#   tests/scripts/redis_ha.sh stop DIR
#
# One Sentinel is enough for the tests: a failover asked with `SENTINEL failover mymaster` needs
# no quorum. Production runs three (see docs/state.md). Installs Debian's redis-server with
# apt-get when missing (`redis-server --sentinel` is Sentinel: no other package is needed).
set -euo pipefail

die() { echo "redis_ha.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 start|stop DIR"
cmd=$1
dir=$2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# apt_install (its free_port is replaced below by one that also knows cluster bus ports)
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_installed() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
    apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
}

# A free port; `free_port bus` one whose cluster bus port (port + 10000) is free too, which
# Redis needs to be at most 65535.
free_port() {
    python3 - "${1:-}" <<'PY'
import socket, sys
bus = sys.argv[1] == "bus"
for _ in range(200):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    if bus:
        if port > 55535:
            s.close()
            continue
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", port + 10000))
        except OSError:
            s.close()
            continue
        finally:
            b.close()
    s.close()
    print(port)
    break
else:
    sys.exit("no free port")
PY
}

cli() { redis-cli -h 127.0.0.1 -p "$@"; }

wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
    local tries=$(( $1 * 10 )); shift
    for _ in $(seq 1 "$tries"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

answers() { cli "$1" ping 2>/dev/null | grep -q PONG; }

# start_server NAME PORT ARGS...: one redis-server with its pid file and log in DIR.
start_server() {
    local name=$1 port=$2; shift 2
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes \
        --pidfile "$dir/$name.pid" --logfile "$dir/$name.log" \
        --save '' --appendonly no "$@" >/dev/null
    wait_for 10 answers "$port" || { cat "$dir/$name.log" >&2; die "$name did not answer on $port"; }
}

cluster_ok() { cli "$1" cluster info | grep -q 'cluster_state:ok'; }
replica_linked() { cli "$1" info replication | grep -q 'master_link_status:up'; }

print_urls() {
    echo "SENTINEL_URL=redis+sentinel://127.0.0.1:$(cat "$dir/sentinel.port")/mymaster/0"
    local nodes="" p
    for p in $(cat "$dir/cluster.ports"); do nodes="$nodes${nodes:+,}127.0.0.1:$p"; done
    echo "CLUSTER_URL=redis+cluster://$nodes"
}

start() {
    ensure_installed
    if [ -f "$dir/sentinel.port" ] && answers "$(cat "$dir/sentinel.port")"; then
        print_urls; return 0
    fi
    local master replica sentinel
    master=$(free_port); replica=$(free_port); sentinel=$(free_port)
    start_server master "$master"
    start_server replica "$replica" --replicaof 127.0.0.1 "$master"
    # Sentinel rewrites its configuration file: it must be one of its own, in DIR.
    cat > "$dir/sentinel.conf" <<EOF
bind 127.0.0.1
port $sentinel
daemonize yes
pidfile $dir/sentinel.pid
logfile $dir/sentinel.log
dir $dir
sentinel monitor mymaster 127.0.0.1 $master 1
sentinel down-after-milliseconds mymaster 2000
sentinel failover-timeout mymaster 10000
EOF
    redis-server "$dir/sentinel.conf" --sentinel >/dev/null
    wait_for 10 answers "$sentinel" || { cat "$dir/sentinel.log" >&2; die "sentinel did not answer"; }
    wait_for 15 replica_linked "$replica" || die "replica did not link to its master"
    # The sentinel learns the replica from the master's INFO within about 10 s; not waited for
    # here (start-up stays short): the failover test waits until the sentinel knows a replica.
    echo "$sentinel" > "$dir/sentinel.port"

    local ports="" p nodes=()
    for _ in 1 2 3; do
        p=$(free_port bus)
        start_server "cluster-$p" "$p" --cluster-enabled yes \
            --cluster-config-file "$dir/nodes-$p.conf" --cluster-node-timeout 2000
        ports="$ports $p"; nodes+=("127.0.0.1:$p")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$dir/cluster-create.log" 2>&1 \
        || { cat "$dir/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
    for p in $ports; do
        wait_for 20 cluster_ok "$p" || die "cluster node $p not ok"
    done
    echo "$ports" > "$dir/cluster.ports"
    print_urls
}

stop() {
    local pidfile pid
    for pidfile in "$dir"/*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
    done
    for pidfile in "$dir"/*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -f "$dir/sentinel.port" "$dir/cluster.ports"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop DIR" ;;
esac
