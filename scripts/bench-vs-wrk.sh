#!/usr/bin/env bash
# bench-vs-wrk.sh - is `plumb bench` as fast a client as wrk?
#
# Starts lighttpd on a loopback port (generated config, a 1 KiB index.html in a temp
# docroot), pinned to CPU --server-cpu (default 0). Then, pinned to --client-cpu (default 1),
# runs `wrk -t1 -c64` and `plumb bench -t1 -c64` against it, alternating which goes first,
# for --rounds rounds of --duration seconds each. The client core is the bottleneck here
# (lighttpd on its own core outruns one client thread), so req/s measures the client.
# Prints each round, the medians and the median of the per-round ratios plumb/wrk, and the
# CPU each client (and the server) used per request: on a shared machine where neither core
# is saturated, req/s swings with the neighbours' load, while CPU per request does not.
#
# Then the --rate check: wrk2 is used when installed (same rate, latency side by side);
# Debian has no wrk2, so otherwise plumb's --rate latency at 10% and 30% of its unthrottled
# throughput (16 connections) is printed beside that unthrottled run's latency, and a run
# with the server stopped for 0.5 s shows the coordinated-omission correction at work.
#
# Usage: scripts/bench-vs-wrk.sh [--rounds N] [--duration S] [--connections N]
#                                [--plumb PATH] [--server-cpu N] [--client-cpu N] [--port P]
#                                [--rate-only]   (skip the wrk rounds)
# Needs: lighttpd, wrk, taskset, python3 (apt-get install -y lighttpd wrk).
# Everything started is stopped by PID; every run is bounded by --duration.
set -u -o pipefail

ROUNDS=5
DUR=5
CONNS=64
SCPU=0
CCPU=1
PORT=18190
RATE_ONLY=""
HERE=$(cd "$(dirname "$0")" && pwd)
PLUMB=$HERE/../target/release/plumb

die() { echo "bench-vs-wrk: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2;;
    --duration) DUR=$2; shift 2;;
    --connections) CONNS=$2; shift 2;;
    --plumb) PLUMB=$2; shift 2;;
    --server-cpu) SCPU=$2; shift 2;;
    --client-cpu) CCPU=$2; shift 2;;
    --port) PORT=$2; shift 2;;
    --rate-only) RATE_ONLY=1; shift;;
    -h|--help) awk 'NR>1 && /^#/{sub(/^# ?/,""); print; next} NR>1{exit}' "$0"; exit 0;;
    *) die "unknown argument: $1";;
  esac
done
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 50 ] || die "--rounds must be 1..50"
for t in lighttpd wrk taskset python3; do
  command -v "$t" >/dev/null 2>&1 || die "missing $t (apt-get install -y lighttpd wrk)"
done
[ -x "$PLUMB" ] || die "no plumb binary at $PLUMB (cargo build --release)"

WORK=$(mktemp -d /tmp/bench-vs-wrk.XXXXXX)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

mkdir -p "$WORK/root"
head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/root/index.html"
cat > "$WORK/lighttpd.conf" <<EOF
server.document-root = "$WORK/root"
server.bind = "127.0.0.1"
server.port = $PORT
server.modules = ()
server.errorlog = "$WORK/error.log"
server.max-keep-alive-requests = 65535
server.max-keep-alive-idle = 65
server.max-fds = 16384
mimetype.assign = (".html" => "text/html")
EOF
taskset -c "$SCPU" lighttpd -D -f "$WORK/lighttpd.conf" &
SERVER_PID=$!
URL=http://127.0.0.1:$PORT/index.html
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "lighttpd did not start: $(cat "$WORK/error.log" 2>/dev/null)"
  sleep 0.05
done

# Runs a command, its output to $1, and prints the CPU seconds (user + system) it used.
cpu_of() {
  local out=$1; shift
  python3 -c '
import os, sys, subprocess
with open(sys.argv[1], "w") as f:
    p = subprocess.Popen(sys.argv[2:], stdout=f, stderr=subprocess.STDOUT)
    _, _, ru = os.wait4(p.pid, 0)
print("%.4f" % (ru.ru_utime + ru.ru_stime))' "$out" "$@"
}
# CPU seconds the server has used so far (utime + stime from /proc; USER_HZ = 100).
server_cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$SERVER_PID/stat"; }

run_wrk() {
  local s0 c s1
  s0=$(server_cpu)
  c=$(cpu_of "$WORK/wrk.out" taskset -c "$CCPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$URL")
  s1=$(server_cpu)
  python3 - "$WORK/wrk.out" "$c" "$s0" "$s1" "$DUR" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
rps = re.search(r'Requests/sec:\s+([\d.]+)', t)
p50 = re.search(r'50%\s+([\d.]+)(us|ms|s)', t)
p99 = re.search(r'99%\s+([\d.]+)(us|ms|s)', t)
err = re.search(r'Socket errors: (.*)', t)
n = re.search(r'(\d+) requests in', t)
us = lambda m: float(m.group(1)) * {'us': 1, 'ms': 1000, 's': 1e6}[m.group(2)] if m else float('nan')
cpu, s0, s1, dur = map(float, sys.argv[2:6])
n = int(n.group(1)) if n else 0
per = lambda x: '%.2f' % (x * 1e6 / n) if n else 'nan'
print(rps.group(1) if rps else 'nan', '%.1f' % us(p50), '%.1f' % us(p99), per(cpu), per(s1 - s0),
      '%.0f' % (100 * cpu / dur), '%.0f' % (100 * (s1 - s0) / dur), (err.group(1) if err else 'none').replace(' ', ''))
EOF
}
run_plumb() {
  local s0 c s1
  s0=$(server_cpu)
  c=$(cpu_of "$WORK/plumb.json" taskset -c "$CCPU" "$PLUMB" bench "$URL" -t1 -c"$CONNS" -d "$DUR" --json)
  s1=$(server_cpu)
  python3 - "$WORK/plumb.json" "$c" "$s0" "$s1" "$DUR" <<'EOF'
import json, sys
cpu, s0, s1, dur = map(float, sys.argv[2:6])
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    print('nan nan nan nan nan nan nan failed'); sys.exit()
e = r['errors']; bad = ','.join('%s:%d' % (k, v) for k, v in e.items() if v) or 'none'
n = r['requests']
per = lambda x: '%.2f' % (x * 1e6 / n) if n else 'nan'
print('%.0f' % r['requests_per_sec'], r['latency_us']['p50'], r['latency_us']['p99'], per(cpu), per(s1 - s0),
      '%.0f' % (100 * cpu / dur), '%.0f' % (100 * (s1 - s0) / dur), bad)
EOF
}

if [ -z "$RATE_ONLY" ]; then
echo "lighttpd on CPU $SCPU, clients on CPU $CCPU, $CONNS connections, 1 thread, ${DUR}s x $ROUNDS rounds"
echo "$URL (1 KiB)"
printf '%-6s %-6s %10s %9s %9s %11s %11s %8s %8s  %s\n' round client req/s p50_us p99_us cli_us/req srv_us/req cli_cpu% srv_cpu% errors
RES=$WORK/results.tsv
: > "$RES"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="wrk plumb"; else order="plumb wrk"; fi
  for c in $order; do
    if [ "$c" = wrk ]; then line=$(run_wrk); else line=$(run_plumb); fi
    # shellcheck disable=SC2086
    printf '%-6s %-6s %10s %9s %9s %11s %11s %8s %8s  %s\n' "$r" "$c" $line
    echo "$r $c $line" >> "$RES"
  done
done
python3 - "$RES" <<'EOF'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for r, c, rps, p50, p99, ccpu, scpu, cbusy, sbusy, err in rows:
    by.setdefault(c, {})[r] = tuple(map(float, (rps, p50, p99, ccpu, scpu, cbusy, sbusy)))
med = lambda c, i: st.median(v[i] for v in by[c].values())
ratios = [by['plumb'][r][0] / by['wrk'][r][0] for r in by['wrk'] if r in by['plumb'] and by['wrk'][r][0] > 0]
print()
print('median req/s: wrk %.0f, plumb %.0f' % (med('wrk', 0), med('plumb', 0)))
print('median p50/p99 us: wrk %.1f/%.1f, plumb %.1f/%.1f' % (med('wrk', 1), med('wrk', 2), med('plumb', 1), med('plumb', 2)))
print('median CPU per request, us: client wrk %.2f, plumb %.2f; server with wrk %.2f, with plumb %.2f'
      % (med('wrk', 3), med('plumb', 3), med('wrk', 4), med('plumb', 4)))
print('median CPU busy %%: client wrk %.0f, plumb %.0f; server %.0f / %.0f (100 = one core saturated)'
      % (med('wrk', 5), med('plumb', 5), med('wrk', 6), med('plumb', 6)))
cr = [by['wrk'][r][3] / by['plumb'][r][3] for r in by['wrk'] if r in by['plumb'] and by['plumb'][r][3] > 0]
print('plumb/wrk req/s ratio: median %.3f (min %.3f, max %.3f over %d rounds)' % (st.median(ratios), min(ratios), max(ratios), len(ratios)))
print('client efficiency ratio (wrk CPU/req over plumb CPU/req): median %.3f' % st.median(cr))
EOF
fi

# ---------------------------------------------------------------- --rate check
echo
echo "--rate check (1 thread, 16 connections, ${DUR}s each; latency from the scheduled send time)"
RC=16
printf '%-34s %12s %10s %10s %10s  %s\n' run req/s p50_us p99_us p999_us errors
rate_line() { # label, extra args...
  local label=$1; shift
  taskset -c "$CCPU" "$PLUMB" bench "$URL" -t1 -c"$RC" -d "$DUR" --json "$@" > "$WORK/rate.json" 2>/dev/null
  python3 - "$WORK/rate.json" "$label" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); l = r['latency_us']
bad = ','.join('%s:%d' % (k, v) for k, v in r['errors'].items() if v) or 'none'
print('%-34s %12.0f %10.1f %10.1f %10.1f  %s' % (sys.argv[2], r['requests_per_sec'], l['p50'], l['p99'], l['p999'], bad))
EOF
}
rate_line "plumb unthrottled (-c$RC)"
# The rates are fractions of the unthrottled run just measured.
MAX=$(python3 -c "import json; print(int(json.load(open('$WORK/rate.json'))['requests_per_sec']))")
[ "$MAX" -ge 100 ] || die "plumb measured no throughput: $(cat "$WORK/rate.json")"
for pct in 10 30; do
  R=$((MAX * pct / 100))
  rate_line "plumb --rate $R ($pct% of max)" --rate "$R"
  if command -v wrk2 >/dev/null 2>&1; then
    taskset -c "$CCPU" wrk2 -t1 -c"$RC" -d"${DUR}s" -R"$R" --latency "$URL" > "$WORK/wrk2.out" 2>&1
    printf '%-34s %s\n' "wrk2 -R$R" "$(grep -E 'Requests/sec|50.000%|99.000%|99.900%' "$WORK/wrk2.out" | tr -s ' \n' ' ')"
  fi
done
command -v wrk2 >/dev/null 2>&1 || echo "(wrk2 is not installed: Debian does not package it; compare the --rate rows with the unthrottled row)"

# A server stall: lighttpd is stopped (SIGSTOP) for 0.5 s in the middle of each run. With
# --rate, every request scheduled during the stall is charged its wait (coordinated omission
# corrected): about 10% of requests see 0-500 ms, so p99 is hundreds of ms. Without --rate the
# 16 connections simply wait, only 16 requests record the stall, and p99 barely moves.
echo
echo "server stalled (SIGSTOP) for 0.5 s in the middle of each ${DUR}s run:"
stall_line() {
  ( sleep "$(python3 -c "print($DUR / 2)")"; kill -STOP "$SERVER_PID"; sleep 0.5; kill -CONT "$SERVER_PID" ) &
  local staller=$!
  rate_line "$@"
  wait "$staller"
}
R=$((MAX * 10 / 100))
stall_line "plumb unthrottled, stalled" 
stall_line "plumb --rate $R, stalled" --rate "$R"
