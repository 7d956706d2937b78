#!/usr/bin/env bash
# plumb ipc side by side with the C reference programs (scripts/ipc: pingpong.c, bw.c)
# on the same settings: the same channels (two pipes, a UNIX stream socketpair, TCP over
# 127.0.0.1 with TCP_NODELAY), 1-byte round trips, 64 KiB writes, the same pinning ("cross":
# parent on CPU 0, child on CPU 1; "same": both on CPU 0; plus cross with busy-polling), the
# same iteration and byte counts. C and plumb runs alternate, so drifting background load hits
# both alike; each figure is the median of REPS runs. Prints a markdown table with the ratio.
#
#   scripts/ipc-vs-c.sh [REPS]    (default 5; about 2 minutes on 2 idle CPUs, never over
#                                  BUDGET=180 seconds plus one row)
#
# Environment: ITERS / ITERS_CROSS (round trips per run; default 100000, and 20000 for the
# cross-CPU rows that sleep), BW_MIB_SAME / BW_MIB_CROSS (MiB per bandwidth run on one CPU /
# across CPUs; default 2048 / 256), BUDGET (seconds), CREF (the C sources; default
# scripts/ipc in the repository), PLUMB (the binary; default target/release/plumb,
# built if missing).
set -eu -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${1:-5}
ITERS=${ITERS:-100000}
# Sleeping cross-CPU round trips are ~20x slower here: fewer of them keep the script bounded.
ITERS_CROSS=${ITERS_CROSS:-20000}
# Same-CPU bandwidth is ~10x cross-CPU here: size runs so each lasts a good fraction of a second
# (a 25 ms run is at the mercy of one preemption by anything else on the machine).
BW_MIB_SAME=${BW_MIB_SAME:-2048}
BW_MIB_CROSS=${BW_MIB_CROSS:-256}
CREF=${CREF:-$ROOT/scripts/ipc}
PLUMB=${PLUMB:-$ROOT/target/release/plumb}
BUILD=$(mktemp -d /tmp/plumb-ipc-vs-c.XXXXXX)
trap 'rm -rf "$BUILD"' EXIT
# No single run may hang the script, and the whole script stays within BUDGET seconds: rows
# that would start later are printed as skipped (a heavily loaded machine slows every row).
LIMIT=30
BUDGET=${BUDGET:-180}
over_budget() { [ "$SECONDS" -ge "$BUDGET" ]; }

for tool in gcc jq; do
  command -v "$tool" >/dev/null || { echo "ipc-vs-c: needs $tool" >&2; exit 2; }
done
[ -f "$CREF/pingpong.c" ] || { echo "ipc-vs-c: no C reference in $CREF (set CREF)" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "ipc-vs-c: needs 2 CPUs for the cross-CPU rows" >&2; exit 2; }
gcc -O2 -Wall -Wextra -o "$BUILD/pingpong" "$CREF/pingpong.c"
gcc -O2 -Wall -Wextra -o "$BUILD/bw" "$CREF/bw.c"
if [ ! -x "$PLUMB" ]; then
  (cd "$ROOT" && cargo build --release --locked -q)
fi

median() { sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "# plumb ipc vs the C reference ($(date -u +%FT%TZ), $(uname -sr), $(nproc) CPUs, load average $(cut -d" " -f1-3 /proc/loadavg), reps=$REPS, median, runs alternating)"
echo
echo "Latency: $ITERS 1-byte round trips per run ($ITERS_CROSS for cross-CPU without busy-poll) after 1% warm-up (C: pingpong.c; plumb: --iters N --runs 1)."
echo "Bandwidth: $BW_MIB_SAME MiB (same CPU) or $BW_MIB_CROSS MiB (cross-CPU) in 64 KiB writes per run (C: bw.c; plumb: --total-mib N --runs 1). MB = 10^6 B."
echo "ratio = plumb / C (latency: above 1 means plumb is slower; bandwidth: below 1 means plumb is slower)."
echo
echo "| test | channel | cpus (parent/child) | C | plumb | ratio |"
echo "|---|---|---|---:|---:|---:|"

for mode in pipe unix tcp; do
  ch=$mode
  for cp in "0 1" "0 0" "0 1 spin"; do
    set -- $cp
    spin_c=${3:-}
    spin_p=${3:+--spin}
    if [ "$1" != "$2" ] && [ -z "$spin_c" ]; then iters=$ITERS_CROSS; else iters=$ITERS; fi
    label="$mode${3:+ busy-poll}"
    if over_budget; then echo "| round trip | $label | $1/$2 | skipped: over the ${BUDGET}s budget | | |"; continue; fi
    c_mean=() c_p50=() c_p99=() p_mean=() p_p50=() p_p99=()
    for _ in $(seq 1 "$REPS"); do
      out=$(timeout $LIMIT "$BUILD/pingpong" "$mode" "$iters" "$1" "$2" $spin_c)
      c_mean+=("$(echo "$out" | field mean_ns)"); c_p50+=("$(echo "$out" | field p50_ns)"); c_p99+=("$(echo "$out" | field p99_ns)")
      js=$(timeout $LIMIT "$PLUMB" ipc --json --only "latency,$ch" --pin "$1,$2" --iters "$iters" --runs 1 $spin_p)
      p_mean+=("$(echo "$js" | jq '.latency[0].mean_ns')"); p_p50+=("$(echo "$js" | jq '.latency[0].p50_ns')"); p_p99+=("$(echo "$js" | jq '.latency[0].p99_ns')")
    done
    for stat in mean p50 p99; do
      eval "cv=\$(printf '%s\n' \"\${c_$stat[@]}\" | median)"
      eval "pv=\$(printf '%s\n' \"\${p_$stat[@]}\" | median)"
      printf '| round trip %s ns | %s | %s/%s | %.0f | %.0f | %s |\n' "$stat" "$label" "$1" "$2" "$cv" "$pv" "$(ratio "$pv" "$cv")"
    done
  done
done

for mode in pipe unix tcp; do
  ch=$mode
  for cp in "0 1" "0 0"; do
    set -- $cp
    if [ "$1" = "$2" ]; then mib=$BW_MIB_SAME; else mib=$BW_MIB_CROSS; fi
    if over_budget; then echo "| bandwidth MB/s | $mode | $1/$2 | skipped: over the ${BUDGET}s budget | | |"; continue; fi
    cs=() ps=()
    for _ in $(seq 1 "$REPS"); do
      cs+=("$(timeout $LIMIT "$BUILD/bw" "$mode" 65536 "$mib" "$1" "$2" | field MB_s)")
      ps+=("$(timeout $LIMIT "$PLUMB" ipc --json --only "bandwidth,$ch" --pin "$1,$2" --chunk 65536 --total-mib "$mib" --runs 1 | jq '.bandwidth[0].mb_per_s')")
    done
    cv=$(printf '%s\n' "${cs[@]}" | median)
    pv=$(printf '%s\n' "${ps[@]}" | median)
    printf '| bandwidth MB/s | %s | %s/%s | %.0f | %.0f | %s |\n' "$mode" "$1" "$2" "$cv" "$pv" "$(ratio "$pv" "$cv")"
  done
done
echo
echo "took ${SECONDS}s; load average now $(cut -d" " -f1-3 /proc/loadavg)"
echo "cpus 0/1 = cross-CPU (each hand-off wakes a sleeping task on the other CPU); 0/0 = same CPU"
echo "(a context switch per hand-off); busy-poll = non-blocking descriptors retried at once."
