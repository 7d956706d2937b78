#!/usr/bin/env bash
# rpc-bench.sh - the JSON-RPC speed table of issue 12, every row in one run.
#
# Servers run pinned to CPU --server-cpu (default 0) with one worker, clients pinned to
# --client-cpu (default 1), 64 connections, --duration seconds per row (default 5). Rows:
#   rpc tcp        plumb rpc serve (event, --workers 1), rpc.echo with the anchor's params
#   rpc unix       the same over a UNIX socket
#   http tcp       plumb serve, 1 KiB keep-alive GET (same server options)
#   http unix      the same over a UNIX socket
#   anchor wrk     jsonrpsee (HTTP, one tokio thread, rpc.echo) driven by wrk with the POST of
#                  ../shared/bench/anchors/rpc-anchor.sh (skipped when wrk or cargo is missing)
#   anchor bench   the same server driven by plumb bench --body (same bytes, same client as
#                  the plumb rows)
#   rpc t=true     plumb rpc serve --method t=true: a fork + exec of true per call
# and `plumb ipc --only fork,exec` pinned to the server CPU, for the cost of a fork + exec.
# Server CPU per call = (utime + stime + cutime + cstime of the server pid, from /proc, after
# minus before the row) / calls answered; the clients' CPU likewise, to show which side
# saturates. Prints one markdown table.
#
# Usage: scripts/rpc-bench.sh [--duration S] [--plumb PATH] [--server-cpu N] [--client-cpu N]
#                             [--port P]
# Needs: taskset, python3; wrk and cargo for the anchor rows (apt-get install -y wrk).
# Loopback only; everything started is stopped by PID; every row is bounded by --duration.
set -u -o pipefail

DUR=5
SCPU=0
CCPU=1
PORT=18510
HERE=$(cd "$(dirname "$0")" && pwd)
PLUMB=$HERE/../target/release/plumb
ANCHORS=$HERE/../../shared/bench/anchors

die() { echo "rpc-bench: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DUR=$2; shift 2;;
    --plumb) PLUMB=$2; shift 2;;
    --server-cpu) SCPU=$2; shift 2;;
    --client-cpu) CCPU=$2; shift 2;;
    --port) PORT=$2; shift 2;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ -x "$PLUMB" ] || die "no plumb at $PLUMB (cargo build --release)"
command -v taskset >/dev/null || die "needs taskset"
command -v python3 >/dev/null || die "needs python3"

WORK=$(mktemp -d /tmp/rpc-bench.XXXXXX)
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
  fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT

PARAMS='{"name":"plumb","text":"0123456789012345678901234567890123456789012345678901234567890123"}'
BODY='{"jsonrpc":"2.0","method":"rpc.echo","params":'$PARAMS',"id":1}'
printf '%s' "$BODY" > "$WORK/call.json"
mkdir -p "$WORK/root"
head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/root/index.html"

# Clock ticks (utime+stime+cutime+cstime) of a pid.
ticks() { awk '{print $14+$15+$16+$17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# start_server ADDR-TO-WAIT-FOR CMD...: starts CMD on the server CPU, waits for its socket.
start_server() {
  local wait_for=$1; shift
  setsid taskset -c "$SCPU" "$@" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    case "$wait_for" in
      unix:*) [ -S "${wait_for#unix:}" ] && return 0;;
      *) (exec 3<>"/dev/tcp/${wait_for%:*}/${wait_for##*:}") 2>/dev/null && return 0;;
    esac
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "server did not start: $*"; }
    sleep 0.05
  done
  die "server did not listen on $wait_for"
}

ROWS="$WORK/rows"
: > "$ROWS"
# row NAME CLIENT...: runs the client pinned to the client CPU (its stdout a plumb bench
# --json document, or wrk's text), measures the server's and the client's CPU.
row() {
  local name=$1; shift
  local s0 s1
  s0=$(ticks "$SERVER_PID")
  local rc TIMEFORMAT='%U %S'
  { time taskset -c "$CCPU" "$@" >"$WORK/client.out" 2>"$WORK/client.err"; rc=$?; } 2>"$WORK/client.time"
  s1=$(ticks "$SERVER_PID")
  if [ $rc -ne 0 ]; then
    echo "rpc-bench: $name: client failed ($rc): $(tail -1 "$WORK/client.err")" >&2
    return
  fi
  python3 - "$name" "$s0" "$s1" "$HZ" "$WORK/client.out" "$WORK/client.time" >>"$ROWS" <<'PY'
import json, re, sys
name, s0, s1, hz, out, tm = sys.argv[1:]
text = open(out).read()
try:
    d = json.loads(text)
    calls, secs, rps = d["requests"], d["duration_s"], d["requests_per_sec"]
    p50, p99 = d["latency_us"]["p50"], d["latency_us"]["p99"]
    errs = sum(d["errors"].values())
except ValueError:  # wrk
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    calls = int(m.group(1))
    secs = float(m.group(2)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(3)]
    p50 = p99 = None
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    errs += int((re.search(r"Non-2xx or 3xx responses: (\d+)", text) or [0, 0])[1])
u, s = (float(x) for x in open(tm).read().split()[-2:])
server_us = (float(s1) - float(s0)) / float(hz) * 1e6 / max(calls, 1)
client_us = (u + s) * 1e6 / max(calls, 1)
print(json.dumps(dict(name=name, rps=rps, calls=calls, server_us=server_us,
                      client_us=client_us, p50=p50, p99=p99, errors=errs)))
PY
}

B=(bench -c 64 -t 1 -d "$DUR" --json)

echo "rpc-bench: $(date -u +%FT%TZ), $(nproc) CPUs, server on CPU $SCPU, client on CPU $CCPU, $DUR s per row" >&2

start_server "127.0.0.1:$PORT" "$PLUMB" rpc serve --listen "127.0.0.1:$PORT" --model event --workers 1 -q
row "rpc.echo, TCP" "$PLUMB" "${B[@]}" "rpc://127.0.0.1:$PORT" --params "$PARAMS"
stop_server
start_server "unix:$WORK/rpc.sock" "$PLUMB" rpc serve --listen "unix:$WORK/rpc.sock" --model event --workers 1 -q
row "rpc.echo, UNIX" "$PLUMB" "${B[@]}" "rpc+unix:$WORK/rpc.sock" --params "$PARAMS"
stop_server

start_server "127.0.0.1:$PORT" "$PLUMB" serve "$WORK/root" --listen "127.0.0.1:$PORT" --model event --workers 1 -q
row "plumb serve 1 KiB keep-alive, TCP" "$PLUMB" "${B[@]}" "http://127.0.0.1:$PORT/index.html"
stop_server
start_server "unix:$WORK/http.sock" "$PLUMB" serve "$WORK/root" --listen "unix:$WORK/http.sock" --model event --workers 1 -q
row "plumb serve 1 KiB keep-alive, UNIX" "$PLUMB" "${B[@]}" "http+unix:$WORK/http.sock:/index.html"
stop_server

ANCHOR_BIN=${CARGO_TARGET_DIR_ANCHOR:-/tmp/plumb-anchor-target}/release/jsonrpsee-echo
if [ ! -x "$ANCHOR_BIN" ] && command -v cargo >/dev/null && [ -d "$ANCHORS/jsonrpsee-echo" ]; then
  CARGO_TARGET_DIR=${ANCHOR_BIN%/release/jsonrpsee-echo} cargo build --release --locked --quiet \
    --manifest-path "$ANCHORS/jsonrpsee-echo/Cargo.toml" || echo "rpc-bench: the anchor did not build" >&2
fi
if [ -x "$ANCHOR_BIN" ]; then
  start_server "127.0.0.1:$PORT" "$ANCHOR_BIN" "127.0.0.1:$PORT"
  if command -v wrk >/dev/null; then
    cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$BODY'
LUA
    row "jsonrpsee (anchor), wrk" wrk -t1 -c64 -d"${DUR}s" -s "$WORK/post.lua" "http://127.0.0.1:$PORT/"
  else
    echo "rpc-bench: no wrk, the anchor's wrk row is skipped" >&2
  fi
  row "jsonrpsee (anchor), plumb bench --body" "$PLUMB" "${B[@]}" "http://127.0.0.1:$PORT/" \
    --body "$WORK/call.json" -H 'Content-Type: application/json'
  stop_server
else
  echo "rpc-bench: no anchor binary, its rows are skipped" >&2
fi

start_server "127.0.0.1:$PORT" "$PLUMB" rpc serve --listen "127.0.0.1:$PORT" --model event --workers 1 -q --method t=true
row "--method t=true (fork + exec per call), TCP" "$PLUMB" "${B[@]}" "rpc://127.0.0.1:$PORT" -m t
stop_server

IPC=$(taskset -c "$SCPU" "$PLUMB" ipc --only fork,exec --json 2>/dev/null)

python3 - "$ROWS" "$IPC" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
try:
    costs = {c["name"]: c for c in json.loads(sys.argv[2])["costs"]}
except (ValueError, KeyError):
    costs = {}
print("| row | calls/s | server CPU per call | client CPU per call | p50 | p99 | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
us = lambda v: "-" if v is None else f"{v:.1f} us"
for r in rows:
    print(f"| {r['name']} | {r['rps']:.0f} | {r['server_us']:.1f} us | {r['client_us']:.1f} us"
          f" | {us(r['p50'])} | {us(r['p99'])} | {r['errors']} |")
for name in ("fork", "exec"):
    c = costs.get(name)
    if c:
        print(f"| plumb ipc {name}: {c['what']}, on the server CPU | {1e9 / c['mean_ns']:.0f} /s"
              f" | {c['mean_ns'] / 1000:.1f} us mean (p50 {c['p50_ns'] / 1000:.1f} us, wall) | | | | |")
by = {r["name"]: r for r in rows}
def ratio(a, b, key):
    if a in by and b in by and by[b][key]:
        return by[a][key] / by[b][key]
print()
for a, b in [("rpc.echo, TCP", "jsonrpsee (anchor), wrk"),
             ("rpc.echo, TCP", "plumb serve 1 KiB keep-alive, TCP"),
             ("rpc.echo, UNIX", "plumb serve 1 KiB keep-alive, UNIX")]:
    r, c = ratio(a, b, "rps"), ratio(a, b, "server_us")
    if r is not None:
        print(f"- {a} / {b}: calls/s {r:.2f}x, server CPU per call {c:.2f}x")
PY
