#!/usr/bin/env bash
# Benchmark of issue 10's delta bundles: a release of N MiB (default 1024) of
# incompressible 200 MiB image layers, and its next release in which one
# image's 200 MiB layer changed. Measures, in the same run: the full build of
# the new release (baseline), `build --base <old bundle>` (the delta), verify
# of each, and `diff`; the delta's size against the target (a delta where one
# 200 MiB layer changed is under 205 MiB) and the peak RSS of each (≤ 100 MiB).
# Writes the "Delta bundles" section of BENCHMARKS.md.
# Usage: scripts/bench-delta.sh [release size in MiB]   (BENCH_RUNS=3, BENCH_PROFILE=release|debug)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mib="${1:-1024}"
runs="${BENCH_RUNS:-3}"
profile="${BENCH_PROFILE:-release}"
work="${BENCH_DIR:-$root/work/bench}"
layer=200
mkdir -p "$work"
export SOURCE_DATE_EPOCH=1767225600
[ -x /usr/bin/time ] || { echo "bench-delta.sh needs GNU time (apt-get install time)"; exit 1; }
if [ "$profile" = release ]; then cargo build -q --release --workspace --bins; else cargo build -q --workspace --bins; fi
bin="$root/target/$profile"
B="$bin/stoa-bundler"; U="$bin/stoa-updater"; F="$bin/stoa-fixtures"
[ -f "$work/k.key" ] || "$B" keygen --out "$work/k" >/dev/null

measure() { /usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >/dev/null 2>"$work/err.out" || { cat "$work/err.out"; exit 1; }; cat "$work/time.out"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
maxof() { sort -n | tail -1; }

# n images of one 200 MiB layer each make the release; the layout has one
# more image (another 200 MiB layer) that replaces the last one in 1.1.0
n=$(( (mib + layer - 1) / layer ))
layout="$work/delta-layout-$n"
if [ ! -f "$layout/index.json" ]; then
  echo "bench-delta: making $(( (n + 1) * layer )) MiB of incompressible layers in $layout"
  rm -rf "$layout"; "$F" bench-layout "$layout" $(( n + 1 )) "$layer"
fi
release() { # version, image index used for the last image
  printf '[release]\nname = "bench"\nversion = "%s"\n' "$1"
  for i in $(seq 0 $(( n - 2 ))); do printf '[[images]]\nname = "bench.local/b%s:%s"\nsource = "oci:%s:bench-%s"\n' "$i" "$1" "$layout" "$i"; done
  printf '[[images]]\nname = "bench.local/b%s:%s"\nsource = "oci:%s:bench-%s"\n' "$(( n - 1 ))" "$1" "$layout" "$2"
}
release 1.0.0 $(( n - 1 )) > "$work/delta-1.0.0.toml"
release 1.1.0 "$n" > "$work/delta-1.1.0.toml"
d="$work/delta-$mib"; mkdir -p "$d"
rm -f "$d"/*.tar.zst
"$B" build "$work/delta-1.0.0.toml" --key "$work/k.key" --out "$d/old.tar.zst" --quiet
declare -A T M
for r in $(seq "$runs"); do
  rm -f "$d/full.tar.zst" "$d/delta.tar.zst"
  sync; read -r t m < <(measure "$B" build "$work/delta-1.1.0.toml" --key "$work/k.key" --out "$d/full.tar.zst" --quiet); T[full]+="$t "; M[full]+="$m "
  sync; read -r t m < <(measure "$B" build "$work/delta-1.1.0.toml" --key "$work/k.key" --out "$d/delta.tar.zst" --base "$d/old.tar.zst" --quiet); T[delta]+="$t "; M[delta]+="$m "
  read -r t m < <(measure "$U" verify "$d/full.tar.zst" --trust "$work/k.pub" --quiet); T[vfull]+="$t "; M[vfull]+="$m "
  read -r t m < <(measure "$U" verify "$d/delta.tar.zst" --trust "$work/k.pub" --quiet); T[vdelta]+="$t "; M[vdelta]+="$m "
  read -r t m < <(measure "$B" diff "$d/old.tar.zst" "$d/full.tar.zst" --trust "$work/k.pub"); T[diff]+="$t "; M[diff]+="$m "
done
"$B" diff "$d/old.tar.zst" "$d/full.tar.zst" --trust "$work/k.pub" > "$d/diff.txt"
med() { tr ' ' '\n' <<<"${T[$1]}" | grep . | median; }
rss() { tr ' ' '\n' <<<"${M[$1]}" | grep . | maxof | awk '{printf "%d MiB", $1/1024}'; }
full=$(stat -c %s "$d/full.tar.zst"); delta=$(stat -c %s "$d/delta.tar.zst")
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
under=$(awk -v b="$delta" 'BEGIN { print (b < 205 * 1048576 ? "yes" : "NO") }')
section="$work/delta-section.md"
{
  echo "### Delta bundles (\`scripts/bench-delta.sh\`, issue 10)"
  echo
  echo "Made on $(date -u +%Y-%m-%d) with the $profile binaries, $(nproc) cores, load average at start"
  echo "$(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: compare ratios, not absolute times)."
  echo "Release 1.0.0: $n images of one incompressible $layer MiB layer each (bundle $(mb "$(stat -c %s "$d/old.tar.zst")"));"
  echo "1.1.0 replaces the last image's layer with another $layer MiB one. Median of $runs runs; peak RSS is the largest run."
  echo
  echo "| measure | value | baseline (same run) | target | peak RSS (≤ 100 MiB) |"
  echo "|---|---|---|---|---|"
  echo "| size of the delta 1.1.0 on 1.0.0 | $(mb "$delta") | full 1.1.0 bundle $(mb "$full") | < 205 MiB ($under) | |"
  echo "| build --base (delta) | $(med delta) s | full build $(med full) s | | $(rss delta) (full: $(rss full)) |"
  echo "| verify of the delta | $(med vdelta) s | verify of the full bundle $(med vfull) s | | $(rss vdelta) (full: $(rss vfull)) |"
  echo "| diff 1.0.0 1.1.0 --trust (reads 1.1.0 in full) | $(med diff) s | | | $(rss diff) |"
  echo
  echo "The delta's build plans the same sources as the full build, then drops every entry whose digest"
  echo "the base has before writing: an omitted image blob is never read (its digest is the one the source"
  echo "layout names, which the site checks against its store), while chart, migration and file sources are"
  echo "hashed while planning, as for a full build. The site-side store check (re-hashing every omitted blob"
  echo "before apply) is not in this table; it reads the omitted bytes once."
  echo
  echo '```'
  cat "$d/diff.txt"
  echo '```'
} > "$section"
python3 - "$root/BENCHMARKS.md" "$section" <<'PY'
import sys
path, sec = sys.argv[1], open(sys.argv[2]).read()
s = open(path).read()
start = s.find("### Delta bundles")
if start >= 0:
    ends = [e for e in (s.find("\n### ", start + 1), s.find("\n## ", start + 1)) if e >= 0]
    s = s[:start] + s[min(ends) + 1 if ends else len(s):]
if "## Other benchmarks" not in s:
    s = s.rstrip("\n") + "\n\n## Other benchmarks\n\n"
i = s.find("## Other benchmarks")
j = s.find("\n", i) + 1
s = s[:j] + "\n" + sec + "\n" + s[j:].lstrip("\n")
open(path, "w").write(s)
PY
cat "$section"
echo "bench-delta: wrote the section to BENCHMARKS.md"
