# Shared helpers of the load scripts (sourced, not run): build the binary, start and stop a
# `dev` gateway on fixed ports, run wrk and read its percentiles.
# Callers set: root, profile (release|debug). Ports: PUBLIC_PORT, INTERNAL_PORT, AUTHORITY_PORT.

# Where cargo builds (shared with `cargo run` unless a CI cache exists).
. "$root/tests/scripts/target_dir.sh"
export RUST_LOG=${RUST_LOG:-warn}
bin=${BIN:-$CARGO_TARGET_DIR/$profile/pdnd-gateway}
public=127.0.0.1:${PUBLIC_PORT:-18180}
internal=127.0.0.1:${INTERNAL_PORT:-18181}
authority=127.0.0.1:${AUTHORITY_PORT:-18190}
export PDNDGW_SERVER__PUBLIC_LISTEN=$public
export PDNDGW_SERVER__INTERNAL_LISTEN=$internal
export PDNDGW_DEV__AUTHORITY_LISTEN=$authority
export PDNDGW_PDND__TOKEN_ENDPOINT=http://$authority/token.oauth2
export PDNDGW_DEV__VOUCHER_LIFETIME_SECS=3600

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
if [ ! -x "$bin" ]; then
  flag=""; [ "$profile" = release ] && flag="--release"
  (cd "$root" && cargo build $flag --bin pdnd-gateway)
fi

dev_pid=""
# start_dev DATA_DIR LOG [VAR=value ...]: starts `dev` and waits until it serves (seeding a large
# database on first run can take minutes). DEV_CONFIG, if set, is a TOML file layered over the
# embedded dev configuration (`dev --config`); SERVER_CPUS, if set, pins it with taskset.
start_dev() {
  local data=$1 log=$2
  shift 2
  local config_args=() pin=()
  [ -n "${DEV_CONFIG:-}" ] && config_args=(--config "$DEV_CONFIG")
  [ -n "${SERVER_CPUS:-}" ] && pin=(taskset -c "$SERVER_CPUS")
  # A kept data directory keeps the purposes file of the version that seeded it (dev leaves an
  # existing one alone); the load wants this version's sample purposes and their quotas.
  rm -f "$data/purposes.toml"
  # The load runs one consumer and purpose at thousands of calls a second: the rate limit at
  # its highest, so a run measures the gateway and never its 429s (a caller may override).
  env PDNDGW_RATE_LIMITS__REQUESTS_PER_SECOND=100000 PDNDGW_RATE_LIMITS__BURST=100000 "$@" \
    "${pin[@]}" "$bin" dev --data-dir "$data" "${config_args[@]}" >"$log" 2>&1 &
  dev_pid=$!
  for _ in $(seq 1 6000); do
    curl -sf "http://$internal/status" >/dev/null 2>&1 && return 0
    kill -0 "$dev_pid" 2>/dev/null || break
    sleep 0.2
  done
  cat "$log" >&2
  return 1
}

stop_dev() {
  [ -n "$dev_pid" ] || return 0
  kill "$dev_pid" 2>/dev/null || true
  wait "$dev_pid" 2>/dev/null || true
  dev_pid=""
}

# run_wrk NAME URL HEADER LUA: one wrk run, its output kept in $work/NAME.txt and the CPU time
# wrk itself used (user + system, clock ticks) in $work/NAME.wrk_ticks. WRK_CPUS, if set, pins
# wrk with taskset.
run_wrk() {
  local pin=()
  [ -n "${WRK_CPUS:-}" ] && pin=(taskset -c "$WRK_CPUS")
  echo "== $1: ${pin[*]} wrk -t$threads -c$connections -d$duration --latency $2" >&2
  # wrk runs as the only waited-for child of this subshell, whose cutime + cstime (fields 16
  # and 17 of /proc/PID/stat) are then wrk's CPU time.
  (
    "${pin[@]}" wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$4" -H "$3" "$2" >"$work/$1.txt"
    read -r -a stat <"/proc/$BASHPID/stat"
    echo $((stat[15] + stat[16])) >"$work/$1.wrk_ticks"
  )
  cat "$work/$1.txt" >&2
}

# stat_ticks FILE: user + system CPU time (clock ticks) in a /proc stat FILE, a process's
# (`/proc/PID/stat`: all its threads, live and exited) or one thread's
# (`/proc/PID/task/TID/stat`); fails when the file is gone.
stat_ticks() {
  local stat f
  # The command name (field 2) may hold spaces: split after its closing parenthesis.
  stat=$(sed 's/^.*) //' "$1" 2>/dev/null) || return 1
  read -r -a f <<<"$stat"
  # f[0] is field 3 (state): utime and stime are fields 14 and 15.
  echo $((f[11] + f[12]))
}

# cpu_ticks PID: user + system CPU time (clock ticks) of PID (all its threads, live and
# exited) and of its child processes (nginx's workers).
cpu_ticks() {
  local total=0 p ticks
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    ticks=$(stat_ticks "/proc/$p/stat") || continue
    total=$((total + ticks))
  done
  echo "$total"
}

# ticks_by_thread PID: the CPU time (clock ticks) of PID's threads in four groups, on one line:
# actix workers (named by actix-server, or by actix-rt where each worker is a system of its
# own), the audit writer, the lookup indexer, and the rest (the process's total less those
# three: the runtime's other threads and any thread that has exited).
ticks_by_thread() {
  local t comm ticks workers=0 writer=0 indexer=0 total
  for t in /proc/"$1"/task/*; do
    comm=$(cat "$t/comm" 2>/dev/null) || continue
    ticks=$(stat_ticks "$t/stat") || continue
    case $comm in
      actix-server\ wo* | actix-rt\|system*) workers=$((workers + ticks)) ;;
      audit-writer) writer=$((writer + ticks)) ;;
      audit-indexer) indexer=$((indexer + ticks)) ;;
    esac
  done
  total=$(stat_ticks "/proc/$1/stat")
  echo "$workers $writer $indexer $((total - workers - writer - indexer))"
}

# metric_sum NAME: the sum of every series of the Prometheus sample NAME (all labels) that the
# gateway's internal listener exposes now; 0 when absent.
metric_sum() {
  local text
  text=$(curl -sf "http://$internal/metrics" 2>/dev/null) || text=""
  awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.6f\n", s + 0 }' <<<"$text"
}

# wrk_percentiles LUA: appends a done() that prints `pct P MICROSECONDS` lines for p50, p90, p99
# and p99.9 (wrk's --latency table stops at p99); read them with xpct.
wrk_percentiles() {
  cat >>"$1" <<'LUA'
function done(summary, latency, requests)
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("pct %g %d\n", p, latency:percentile(p)))
  end
end
LUA
}

to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } }'; }
# pct NAME PERCENT: that percentile of run NAME, in ms.
pct() { grep -E "^ +$2%" "$work/$1.txt" | awk '{print $2}' | to_ms; }
# xpct NAME PERCENT: that percentile (50, 90, 99, 99.9) of run NAME from wrk_percentiles, in ms.
xpct() { awk -v p="$2" '$1 == "pct" && $2 == p { printf "%.3f\n", $3 / 1000 }' "$work/$1.txt"; }
rps() { grep Requests/sec "$work/$1.txt" | awk '{print $2}'; }
# requests NAME: how many requests run NAME completed; seconds NAME: how long it ran.
requests() { awk '/ requests in / { print $1; exit }' "$work/$1.txt"; }
seconds() { awk '/ requests in / { v = $4; sub(/,$/, "", v); print v; exit }' "$work/$1.txt" | to_ms | awk '{ print $1 / 1000 }'; }
errors() { grep -E 'Non-2xx|Socket errors' "$work/$1.txt" || true; }
