#!/usr/bin/env bash
# before-after.sh - plumb serve at two commits side by side with nginx and lighttpd, in one
# http-anchors.sh run (same rounds, rotated order, ratios per round), with the event and pool
# models of each build; prints server CPU per request (srv_cpu_pct x duration / requests).
#
# Usage: scripts/before-after.sh BEFORE_BIN AFTER_BIN [http-anchors options...]
#   e.g. scripts/before-after.sh /tmp/plumb-2917381 target/release/plumb --rounds 3
# Build a binary of an older commit with:
#   git worktree add /tmp/wt-old COMMIT && (cd /tmp/wt-old && cargo build --release --locked)
set -u -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { sed -n '2,10p' "$0"; exit 2; }
before=$(realpath "$1"); after=$(realpath "$2"); shift 2
out=/tmp/before-after-$(date +%Y%m%d-%H%M%S)
ex() { echo "$1:$2:$3 serve {root} --listen 127.0.0.1:{port} --model $4 --workers 1 --threads 8 -q"; }
bash "$here/http-anchors.sh" --out "$out" --tests ka,close,big,rss \
  --only nginx-1w,lighttpd,event-before,event-after,pool-before,pool-after \
  --extra "$(ex event-before 18301 "$before" event)" \
  --extra "$(ex event-after 18302 "$after" event)" \
  --extra "$(ex pool-before 18303 "$before" pool)" \
  --extra "$(ex pool-after 18304 "$after" pool)" "$@"
status=$?
raw="$out/raw.tsv"
[ -f "$raw" ] || exit "$status"
echo
echo "server CPU per request (us), median of rounds; big: per 10 MiB response"
python3 - "$raw" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
cols = rows[0].keys() if rows else []
def pick(r, *names):
    for n in names:
        if n in r and r[n] not in ("", None):
            return r[n]
    return None
per = {}
for r in rows:
    srv, test = pick(r, "server"), pick(r, "test")
    cpu, dur, req = pick(r, "srv_cpu_pct"), pick(r, "duration_us"), pick(r, "requests")
    if None in (srv, test, cpu, dur, req):
        continue
    try:
        us = float(cpu) / 100 * float(dur) / float(req)
    except (ValueError, ZeroDivisionError):
        continue
    per.setdefault((srv, test), []).append(us)
servers = sorted({s for s, _ in per})
tests = [t for t in ("ka", "close", "big") if any(k[1] == t for k in per)]
rss = {}
import os
rp = os.path.join(os.path.dirname(sys.argv[1]), "rss.tsv")
if os.path.exists(rp):
    for r in csv.DictReader(open(rp), delimiter="\t"):
        try:
            rss.setdefault(r["server"], []).append(float(r["rss_1k_kb"]) / 1024)
        except (KeyError, ValueError):
            pass
print("server".ljust(14) + "".join(t.rjust(10) for t in tests) + "  RSS@1000 MiB")
for s in servers:
    print(s.ljust(14) + "".join(
        (f"{statistics.median(per[(s, t)]):10.1f}" if (s, t) in per else "-".rjust(10)) for t in tests)
        + (f"{statistics.median(rss[s]):12.1f}" if s in rss else "           -"))
PY
exit "$status"
