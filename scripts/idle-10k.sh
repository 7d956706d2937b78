#!/usr/bin/env bash
# The idle keep-alive benchmark: 10,000 concurrent idle connections against one event loop.
#
# Starts `plumb serve` (or `plumb echo` with --echo) with `--model event --workers 1 -q` on
# loopback, opens N connections making one request on each, leaves them idle, checks that the
# server holds every one and that a new request on a random sample is answered, and prints the
# server's RSS before/after and the growth per connection (target: <= 4 KiB).
#
# Usage: scripts/idle-10k.sh [--echo] [--conns N] [--sample K]
# Bounded: the client gives up after 120 s; the server is stopped by PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
proto=http
conns=10000
sample=500
while [ $# -gt 0 ]; do
    case "$1" in
        --echo) proto=echo; shift ;;
        --conns) conns="$2"; shift 2 ;;
        --sample) sample="$2"; shift 2 ;;
        *) echo "usage: $0 [--echo] [--conns N] [--sample K]" >&2; exit 2 ;;
    esac
done

cargo build --release --locked --quiet --bin plumb --example idle_conns
plumb=target/release/plumb
client=target/release/examples/idle_conns

# Both ends need a descriptor per connection (plus a few).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((conns + 64)) ]; then
    echo "the descriptor limit ($(ulimit -n)) is below $((conns + 64)); raise the hard limit" >&2
    exit 1
fi

work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

if [ "$proto" = http ]; then
    mkdir "$work/root"
    head -c 1024 /dev/zero | tr '\0' 'x' > "$work/root/1k.txt"
    # A keep-alive timeout longer than the run, so no idle connection is closed by design.
    "$plumb" serve "$work/root" --listen 127.0.0.1:0 --model event --workers 1 -q \
        --keepalive-timeout 300 --header-timeout 300 \
        2> "$work/stderr" &
    pid=$!
    http=(--http /1k.txt)
else
    "$plumb" echo --listen 127.0.0.1:0 --model event --workers 1 -q 2> "$work/stderr" &
    pid=$!
    http=()
fi

addr=
for _ in $(seq 100); do
    addr=$(sed -n 's/^plumb: listening on \([^ ]*\).*/\1/p' "$work/stderr" | head -n 1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "the server did not start:" >&2
    cat "$work/stderr" >&2
    exit 1
fi

echo "plumb $proto --model event --workers 1 on $addr (pid $pid); $conns connections"
timeout 180 "$client" "$addr" "$pid" --conns "$conns" --sample "$sample" "${http[@]}"
