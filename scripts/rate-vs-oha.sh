#!/usr/bin/env bash
# rate-vs-oha.sh - do plumb bench's --rate latencies agree with another open-loop generator?
#
# wrk2 is not packaged by Debian; oha (crates.io) has the same coordinated-omission
# correction (`-q RATE --latency-correction`: latency measured from each request's scheduled
# send time). This script serves a 1 KiB file with `plumb serve --model event --workers 1`
# pinned to CPU 0, and runs plumb bench and oha pinned to CPU 1 at the same rate and
# connection count, alternately, each run bounded in time; then the same with the server
# stopped (SIGSTOP) for 0.5 s in the middle of the run. Prints p50/p90/p99/p99.9 side by side.
# Loopback only; everything started is stopped by PID.
#
# Usage: scripts/rate-vs-oha.sh [--rate R] [--connections N] [--duration SECS] [--rounds N]
#        (needs oha: `cargo install oha --locked`; OHA=/path/to/oha to point at it)
set -u -o pipefail
RATE=20000 CONNS=16 DUR=5 ROUNDS=3 PORT=18390
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE=$2; shift 2;; --connections) CONNS=$2; shift 2;;
    --duration) DUR=$2; shift 2;; --rounds) ROUNDS=$2; shift 2;;
    *) echo "unknown argument: $1" >&2; exit 2;;
  esac
done
HERE=$(cd "$(dirname "$0")/.." && pwd)
PLUMB=${PLUMB:-$HERE/target/release/plumb}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
[ -x "$PLUMB" ] || { echo "build first: cargo build --release" >&2; exit 2; }
[ -x "$OHA" ] || { echo "oha not found: cargo install oha --locked (or OHA=path)" >&2; exit 2; }
ROOT=$(mktemp -d); trap 'kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null; rm -rf "$ROOT"' EXIT
head -c 1024 /dev/zero | tr '\0' 'x' > "$ROOT/index.html"
taskset -c 0 "$PLUMB" serve "$ROOT" --listen 127.0.0.1:$PORT --model event --workers 1 -q 2>/dev/null &
SRV=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:$PORT/index.html
PY=$(command -v python3)

plumb_run() {  # prints p50 p90 p99 p999 (us) and req/s
  taskset -c 1 timeout $((DUR + 20)) "$PLUMB" bench "$URL" -c "$CONNS" --rate "$RATE" -d "${DUR}s" --json |
    "$PY" -c 'import json,sys; d=json.load(sys.stdin); l=d["latency_us"]; print(l["p50"], l["p90"], l["p99"], l["p999"], round(d["requests_per_sec"]))'
}
oha_run() {
  taskset -c 1 timeout $((DUR + 20)) "$OHA" "$URL" -c "$CONNS" -q "$RATE" --latency-correction -z "${DUR}s" \
    --no-tui --output-format json |
    "$PY" -c 'import json,sys; d=json.load(sys.stdin); p=d["latencyPercentiles"]; s=d["summary"]
print(round(p["p50"]*1e6,1), round(p["p90"]*1e6,1), round(p["p99"]*1e6,1), round(p["p99.9"]*1e6,1), round(s["requestsPerSec"]))'
}
stall() { sleep "$(echo "$DUR / 2" | bc -l)"; kill -STOP "$SRV"; sleep 0.5; kill -CONT "$SRV"; }

echo "# --rate $RATE, $CONNS connections, ${DUR}s runs; latency in us from the scheduled send time"
printf '%-28s %10s %10s %10s %10s %10s\n' run p50 p90 p99 p99.9 req/s
for r in $(seq "$ROUNDS"); do
  printf '%-28s %10s %10s %10s %10s %10s\n' "plumb bench (round $r)" $(plumb_run)
  printf '%-28s %10s %10s %10s %10s %10s\n' "oha (round $r)" $(oha_run)
done
echo "# the server stopped (SIGSTOP) for 0.5 s in the middle of the run"
# (wait for the staller by PID: a bare `wait` would also wait for the server, and returns
# early when the stopped server changes state, which ended the script before the oha run)
stall & ST=$!; printf '%-28s %10s %10s %10s %10s %10s\n' "plumb bench, stalled" $(plumb_run); wait "$ST"
stall & ST=$!; printf '%-28s %10s %10s %10s %10s %10s\n' "oha, stalled" $(oha_run); wait "$ST"
