#!/usr/bin/env bash
# Benchmarks of issue 10 (split parts and parity), baselines in the same run
# on the same release: build --split vs the unsplit build; verify of the
# split set vs verify of the single file; build --split --parity 1 vs
# --split (parity encode cost); repair of one lost part (MB/s); peak RSS of
# each. Default 1 GiB of incompressible layers cut into 5 parts.
# Writes the "Split parts and parity" section of BENCHMARKS.md.
# Usage: scripts/bench-parts.sh [size in MiB]   (BENCH_RUNS=5, BENCH_PROFILE=release|debug)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mib="${1:-1024}"
runs="${BENCH_RUNS:-5}"
profile="${BENCH_PROFILE:-release}"
work="${BENCH_DIR:-$root/work/bench}"
mkdir -p "$work"
export SOURCE_DATE_EPOCH=1767225600  # every build of the release is byte-identical
[ -x /usr/bin/time ] || { echo "bench-parts.sh needs GNU time (apt-get install time)"; exit 1; }
if [ "$profile" = release ]; then cargo build -q --release --workspace --bins; else cargo build -q --workspace --bins; fi
bin="$root/target/$profile"
B="$bin/stoa-bundler"; U="$bin/stoa-updater"; F="$bin/stoa-fixtures"
[ -f "$work/k.key" ] || "$B" keygen --out "$work/k" >/dev/null

measure() { /usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >/dev/null 2>"$work/err.out" || { cat "$work/err.out"; exit 1; }; cat "$work/time.out"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
maxof() { sort -n | tail -1; }

layout="$work/layout-$mib"
if [ ! -f "$layout/index.json" ]; then
  echo "bench-parts: making $mib MiB of incompressible layers in $layout"
  rm -rf "$layout"; "$F" bench-layout "$layout" 4 $(( mib / 4 ))
fi
rel="$work/release-$mib.toml"
{
  printf '[release]\nname = "bench"\nversion = "1.0.0"\n'
  for i in 0 1 2 3; do printf '[[images]]\nname = "bench.local/b%s:1"\nsource = "oci:layout-%s:bench-%s"\n' "$i" "$mib" "$i"; done
} > "$rel"
# 5 parts: part size = ceil(bundle / 5) rounded up to MiB, from a first build
one="$work/single-$mib/b.tar.zst"; mkdir -p "$work/single-$mib" "$work/split-$mib" "$work/par-$mib"
rm -f "$one"; "$B" build "$rel" --key "$work/k.key" --out "$one" --quiet
bytes=$(stat -c %s "$one")
part=$(( (bytes / 5 / 1048576 + 1) ))MiB
declare -A T M
for r in $(seq "$runs"); do
  rm -f "$one" "$work/split-$mib"/* "$work/par-$mib"/*
  sync; read -r t m < <(measure "$B" build "$rel" --key "$work/k.key" --out "$one" --quiet); T[build]+="$t "; M[build]+="$m "
  sync; read -r t m < <(measure "$B" build "$rel" --key "$work/k.key" --out "$work/split-$mib/b.tar.zst" --split "$part" --quiet); T[split]+="$t "; M[split]+="$m "
  sync; read -r t m < <(measure "$B" build "$rel" --key "$work/k.key" --out "$work/par-$mib/b.tar.zst" --split "$part" --parity 1 --quiet); T[parity]+="$t "; M[parity]+="$m "
  read -r t m < <(measure "$U" verify "$one" --trust "$work/k.pub" --quiet); T[verify1]+="$t "; M[verify1]+="$m "
  read -r t m < <(measure "$U" verify "$work/split-$mib" --trust "$work/k.pub" --quiet); T[verifyn]+="$t "; M[verifyn]+="$m "
  rm -f "$work/par-$mib/b.tar.zst.part003"
  read -r t m < <(measure "$U" repair "$work/par-$mib" --trust "$work/k.pub" --out "$work/par-$mib"); T[repair]+="$t "; M[repair]+="$m "
  cmp -s <(cat "$work/par-$mib"/b.tar.zst.part[0-9]*) "$one" || { echo "bench-parts: repaired set differs from the single build"; exit 1; }
done
med() { tr ' ' '\n' <<<"${T[$1]}" | grep . | median; }
rss() { tr ' ' '\n' <<<"${M[$1]}" | grep . | maxof | awk '{printf "%d MiB", $1/1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
ok() { awk -v r="$1" -v l="$2" 'BEGIN { print (r <= l ? "yes" : "NO") }'; }
psize=$(stat -c %s "$work/par-$mib/b.tar.zst.part001")
rep_mbs=$(awk -v b="$psize" -v t="$(med repair)" 'BEGIN { printf "%.0f", (t > 0 ? b / 1e6 / t : 0) }')
enc=$(awk -v p="$(med parity)" -v s="$(med split)" -v b="$(med build)" 'BEGIN { printf "%.2f", (b > 0 ? (p - s) / b : 0) }')
section="$work/parts-section.md"
{
  echo "### Split parts and parity (\`scripts/bench-parts.sh\`, issue 10)"
  echo
  echo "Made on $(date -u +%Y-%m-%d) with the $profile binaries, $(nproc) cores, load average at start"
  echo "$(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: compare ratios, not absolute times)."
  echo "$mib MiB of incompressible layers, bundle $(awk -v b="$bytes" 'BEGIN{printf "%.2f GiB", b/1073741824}'),"
  echo "cut into 5 parts of at most $part; median of $runs runs; peak RSS is the largest run."
  echo
  echo "| measure | time | baseline (same run) | ratio | target | peak RSS (≤ 100 MiB) |"
  echo "|---|---|---|---|---|---|"
  r=$(ratio "$(med split)" "$(med build)"); echo "| build --split | $(med split) s | unsplit build $(med build) s | $r ($(ok "$r" 1.05)) | ≤ 1.05 | $(rss split) |"
  r=$(ratio "$(med verifyn)" "$(med verify1)"); echo "| verify of the 5 parts | $(med verifyn) s | verify of the single file $(med verify1) s | $r ($(ok "$r" 1.05)) | ≤ 1.05 | $(rss verifyn) |"
  echo "| build --split --parity 1 | $(med parity) s | build --split $(med split) s | encode adds $enc × the unsplit build ($(ok "$enc" 0.5)) | ≤ 0.5 | $(rss parity) |"
  echo "| repair of one lost part ($((psize / 1048576)) MiB) | $(med repair) s | — | $rep_mbs MB/s of rebuilt part ($(awk -v m="$rep_mbs" 'BEGIN{print (m >= 500 ? "yes" : "NO")}')) | ≥ 500 MB/s | $(rss repair) |"
  echo "| (unsplit build, verify) | | | | | $(rss build), $(rss verify1) |"
  echo
  echo "Repair time is the whole command: presence and size of every part, then one pass that reads"
  echo "the good data parts and one parity part (about 1 GiB) through the decoder while hashing them, and"
  echo "writes and hashes the rebuilt part; the MB/s figure is the rebuilt part's size over that time."
} > "$section"
# replace our section under "## Other benchmarks" in BENCHMARKS.md, keeping the rest
python3 - "$root/BENCHMARKS.md" "$section" <<'PY'
import sys, re
path, sec = sys.argv[1], open(sys.argv[2]).read()
s = open(path).read() if __import__('os').path.exists(path) else "# Benchmarks\n"
start = s.find("### Split parts and parity")
if start >= 0:
    end = s.find("\n### ", start + 1)
    end2 = s.find("\n## ", start + 1)
    ends = [e for e in (end, end2) if e >= 0]
    s = s[:start] + s[min(ends) + 1 if ends else len(s):]
if "## Other benchmarks" not in s:
    s = s.rstrip("\n") + "\n\n## Other benchmarks\n\n"
i = s.find("## Other benchmarks")
j = s.find("\n", i) + 1
s = s[:j] + "\n" + sec + "\n" + s[j:].lstrip("\n")
open(path, "w").write(s)
PY
cat "$section"
echo "bench-parts: wrote the section to BENCHMARKS.md"
