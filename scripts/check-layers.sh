#!/usr/bin/env bash
# check-layers.sh - proves the architecture's rules with greps over the sources (run by .ci/run).
#
#  1. crates/proto is sans-IO: no Instant::now, SystemTime::now, std::fs or libc outside
#     #[cfg(test)] (unit tests sit at the bottom of each file, so a file is checked up to its
#     first #[cfg(test)]), and libc is not a dependency of the crate.
#  2. `unsafe` appears only in crates/sys (every other crate also has #![forbid(unsafe_code)]).
#  3. Nothing under src/models imports a protocol module (plumb_proto): models know the drive
#     layer and the Service contract only.
#  4. The server library does not depend on the instruments crate.
#  5. No import cycle between the server library's top-level modules (crate::X -> crate::Y).
# Exit 0 when every rule holds; otherwise one line per violation and exit 1.
set -u -o pipefail
cd "$(dirname "$0")/.."
fail=0
say() { echo "check-layers: $*"; fail=1; }

# The part of a Rust file before its first #[cfg(test)].
non_test() { awk '/^[[:space:]]*#\[cfg\(test\)\]/{exit} {print FILENAME ":" FNR ": " $0}' "$1"; }

# 1. The pure core.
while read -r hit; do
  say "proto must not read clocks, files or libc: $hit"
done < <(for f in $(find crates/proto/src -name '*.rs' | sort); do non_test "$f"; done \
          | grep -vE '^[^:]*:[0-9]+: *//' \
          | grep -E 'Instant::now|SystemTime::now|std::fs|\bfs::|libc')
if grep -qE '^libc' crates/proto/Cargo.toml; then say "crates/proto/Cargo.toml depends on libc"; fi

# 2. unsafe only in sys.
while read -r hit; do
  say "unsafe outside crates/sys: $hit"
done < <(grep -rnE '\bunsafe\b' --include='*.rs' src crates fuzz/fuzz_targets examples tests 2>/dev/null \
          | grep -v '^crates/sys/' | grep -vE ':[0-9]+: *//' | grep -v 'forbid(unsafe_code)')
for root in src/lib.rs src/main.rs crates/*/src/lib.rs; do
  case "$root" in crates/sys/*) continue;; esac
  [ -f "$root" ] || continue
  grep -q 'forbid(unsafe_code)' "$root" || say "$root lacks #![forbid(unsafe_code)]"
done

# 3. Models know no protocol.
while read -r hit; do
  say "a model imports a protocol module: $hit"
done < <(grep -rn 'plumb_proto' --include='*.rs' src/models 2>/dev/null)

# 4. The server library never depends on the instruments.
if grep -qE '^plumb-instruments' Cargo.toml; then
  awk '/^\[dependencies\]/{d=1;next} /^\[/{d=0} d && /^plumb-instruments/' Cargo.toml | grep -q . \
    && grep -q '^\[lib\]' Cargo.toml && say "the server library's Cargo.toml depends on plumb-instruments"
fi
# The binary's files are src/main.rs and the modules it declares (`mod cli;` -> src/cli.rs);
# they may use the instruments, the library's files may not.
bin_files() { echo src/main.rs; sed -nE 's/^mod ([a-z_0-9]+);.*/src\/\1.rs/p' src/main.rs; }
while read -r hit; do
  say "the server library uses the instruments: $hit"
done < <(grep -rn 'plumb_instruments' --include='*.rs' src 2>/dev/null \
          | grep -vF -f <(bin_files | sed 's/$/:/'))

# 5. No cycle between top-level modules of the server library.
python3 - <<'PY' || fail=1
import os, re, sys
src = "src"
# The binary's modules (declared by main.rs) are not the library's.
binary = set(re.findall(r"(?m)^mod (\w+);", open(os.path.join(src, "main.rs")).read()))
mods = {}
for entry in sorted(os.listdir(src)):
    path = os.path.join(src, entry)
    if entry in ("lib.rs", "main.rs"):
        continue
    if (entry[:-3] if entry.endswith(".rs") else entry) in binary:
        continue
    name = entry[:-3] if entry.endswith(".rs") else entry
    files = [path] if entry.endswith(".rs") else [
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".rs")]
    mods[name] = files
edges = {m: set() for m in mods}
for m, files in mods.items():
    for f in files:
        text = open(f).read().split("#[cfg(test)]")[0]
        for dep in re.findall(r"\bcrate::(\w+)", text):
            if dep != m and dep in mods:
                edges[m].add(dep)
seen, stack, bad = set(), [], []
def visit(m, path):
    if m in path:
        bad.append(path[path.index(m):] + [m]); return
    if m in seen: return
    seen.add(m)
    for d in sorted(edges[m]):
        visit(d, path + [m])
for m in sorted(mods):
    visit(m, [])
for cycle in bad:
    print("check-layers: import cycle: " + " -> ".join(cycle))
sys.exit(1 if bad else 0)
PY

if [ "$fail" -ne 0 ]; then exit 1; fi
echo "check-layers: every layer rule holds"
