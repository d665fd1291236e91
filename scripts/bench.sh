#!/usr/bin/env bash
# Benchmarks (issue 2): build and verify of a bundle of incompressible image
# layers, against baselines measured in the same run on the same files:
#   build  vs  tar -cf - <layout> | zstd -T0 -3
#   verify vs  zstd -dc <bundle> | openssl dgst -sha256
# and peak RSS of build and verify at two sizes (default 1 GiB and 4 GiB).
# Writes BENCHMARKS.md. Usage: scripts/bench.sh [sizes in MiB…]
# (BENCH_ALL=1 also runs bench-parts.sh, bench-delta.sh, the issue-9 benches and bench-serve.sh.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1024 4096)
runs="${BENCH_RUNS:-5}"
work="${BENCH_DIR:-$root/work/bench}"
mkdir -p "$work"
command -v zstd >/dev/null && command -v openssl >/dev/null && [ -x /usr/bin/time ] || {
  echo "bench.sh needs zstd, openssl and GNU time (apt-get install zstd openssl time)"; exit 1; }

cargo build -q --release --workspace --bins
B="$root/target/release/stoa-bundler"; U="$root/target/release/stoa-updater"
F="$root/target/release/stoa-fixtures"
[ -f "$work/k.key" ] || "$B" keygen --out "$work/k" >/dev/null

# one measurement: prints "<seconds> <peak RSS KiB>"
measure() { /usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >/dev/null 2>"$work/err.out" || { cat "$work/err.out"; exit 1; }; cat "$work/time.out"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# every timed command starts with the same, empty, page cache (when this
# machine lets us drop it): otherwise the side timed second reads what the
# first one just read, which at sizes near the RAM decides the ratio
cold() { sync; if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi; }
cache_note=$([ -w /proc/sys/vm/drop_caches ] && echo "dropped before each timed command, both sides (every read is from disk)" || echo "not dropped (no permission): the side timed second may read from the cache")

results=()
for mib in "${sizes[@]}"; do
  layout="$work/layout-$mib"
  per=$(( mib / 4 ))
  if [ ! -f "$layout/index.json" ]; then
    echo "bench: making $mib MiB of incompressible layers in $layout"
    rm -rf "$layout"; "$F" bench-layout "$layout" 4 "$per"
  fi
  rel="$work/release-$mib.toml"
  {
    printf '[release]\nname = "bench"\nversion = "1.0.0"\n'
    for i in 0 1 2 3; do printf '[[images]]\nname = "bench.local/b%s:1"\nsource = "oci:layout-%s:bench-%s"\n' "$i" "$mib" "$i"; done
  } > "$rel"
  out="$work/bundle-$mib.tar.zst"; base="$work/baseline-$mib.tar.zst"
  bt=(); bm=(); tt=(); vt=(); vm=(); ot=()
  for r in $(seq "$runs"); do
    rm -f "$out" "$base"  # neither side pays for replacing an old output
    cold; read -r t m < <(measure "$B" build "$rel" --key "$work/k.key" --out "$out" --quiet); bt+=("$t"); bm+=("$m")
    cold; read -r t _ < <(measure sh -c "tar -C '$work' -cf - 'layout-$mib' | zstd -T0 -3 -q -f -o '$base'"); tt+=("$t")
    cold; read -r t m < <(measure "$U" verify "$out" --trust "$work/k.pub" --quiet); vt+=("$t"); vm+=("$m")
    cold; read -r t _ < <(measure sh -c "zstd -dc '$out' | openssl dgst -sha256"); ot+=("$t")
  done
  B_T=$(printf '%s\n' "${bt[@]}" | median); T_T=$(printf '%s\n' "${tt[@]}" | median)
  V_T=$(printf '%s\n' "${vt[@]}" | median); O_T=$(printf '%s\n' "${ot[@]}" | median)
  B_M=$(printf '%s\n' "${bm[@]}" | sort -n | tail -1); V_M=$(printf '%s\n' "${vm[@]}" | sort -n | tail -1)
  bytes=$(stat -c %s "$out")
  results+=("$mib|$bytes|$B_T|$T_T|$V_T|$O_T|$B_M|$V_M")
  echo "bench $mib MiB: build ${B_T}s (baseline ${T_T}s), verify ${V_T}s (baseline ${O_T}s), RSS build ${B_M} KiB verify ${V_M} KiB"
  rm -f "$base"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
ok() { awk -v r="$1" -v l="$2" 'BEGIN { print (r <= l ? "yes" : "NO") }'; }
{
  echo "# Benchmarks"
  echo
  echo "Made by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d). Each figure is the median of $runs runs;"
  echo "baselines are measured in the same run, on the same files. Peak RSS is the"
  echo "largest of the runs (GNU time, %M). Page cache: $cache_note."
  echo
  echo "## Machine"
  echo
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; SHA extensions: $(grep -q sha_ni /proc/cpuinfo && echo yes || echo no)"
  echo "- Memory: $(free -g | awk '/Mem:/ {print $2}') GiB; disk: $(df -h "$work" | awk 'NR==2 {print $2}') ($(df -T "$work" | awk 'NR==2 {print $2}'))"
  echo "- $(zstd --version | head -1); $(openssl version); $(rustc --version)"
  echo
  echo "## Build and verify, incompressible layers (like real gzip layers)"
  echo
  echo "Data: 4 images, each a small shared base layer plus one incompressible"
  echo "gzip layer (\`stoa-fixtures bench-layout\`)."
  echo
  echo "| content | bundle | build | baseline tar\\|zstd -T0 -3 | ratio (≤ 1.25) | verify | baseline zstd -dc\\|openssl sha256 | ratio (≤ 1.25) | peak RSS build | peak RSS verify (≤ 100 MiB) |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for r in "${results[@]}"; do
    IFS='|' read -r mib bytes bt tt vt ot bm vm <<<"$r"
    br=$(ratio "$bt" "$tt"); vr=$(ratio "$vt" "$ot")
    echo "| $mib MiB | $(awk -v b="$bytes" 'BEGIN{printf "%.2f GiB", b/1073741824}') | ${bt} s | ${tt} s | $br ($(ok "$br" 1.25)) | ${vt} s | ${ot} s | $vr ($(ok "$vr" 1.25)) | $((bm / 1024)) MiB | $((vm / 1024)) MiB |"
  done
  echo
  echo "Notes"
  echo
  echo "- The build writes already-compressed layers as raw zstd blocks (docs/FORMAT.md),"
  echo "  hashing each blob as it copies it; the output is written by a second thread."
  echo "  The build does not fsync by default (\`--fsync\` does; the baseline does not either)."
  echo "- Verify decompresses on one thread and parses and hashes on another, in 4 × 1 MiB"
  echo "  buffers: memory does not grow with the bundle (compare the RSS at both sizes)."
  echo "- Each run starts with no output file from the previous run (removed before the timer, for both"
  echo "  sides): replacing a GiB-sized file costs this VM 1-2 s of freeing, which made earlier runs noisy."
} > "$root/BENCHMARKS.md.new"
if [ -f "$root/BENCHMARKS.md" ] && grep -q '^## Other benchmarks' "$root/BENCHMARKS.md"; then
  { echo; sed -n '/^## Other benchmarks/,$p' "$root/BENCHMARKS.md"; } >> "$root/BENCHMARKS.md.new"
fi
mv "$root/BENCHMARKS.md.new" "$root/BENCHMARKS.md"
echo "bench: wrote BENCHMARKS.md"
# The other benchmarks keep their own sections under "## Other benchmarks":
# BENCH_ALL=1 runs them too, at the same sizes (issue 10: parts, parity,
# repair and deltas; issue 9: images and the post-renderer, when present;
# issue 19: serve vs docker-registry, its figures on stdout).
if [ "${BENCH_ALL:-0}" = 1 ]; then
  "$root/scripts/bench-parts.sh" "${sizes[@]}"
  "$root/scripts/bench-delta.sh" "${sizes[-1]}"
  for s in bench-images.sh bench-render.sh bench-serve.sh; do
    [ ! -x "$root/scripts/$s" ] || "$root/scripts/$s"
  done
fi
