#!/usr/bin/env bash
# Push benchmark (issue 4): the images of a >= 1 GiB bundle pushed by
# `stoa-updater apply` versus `skopeo copy oci:… docker://…` of the same
# images, in the same run, each into its own fresh docker-registry on
# loopback; the updater's peak RSS (/usr/bin/time -v); and a re-apply from a
# fresh state folder against the same registry, which must upload no blob
# bytes. Figures go to stdout and $work/results.txt.
#
#   BENCH_IMAGES=4 BENCH_LAYER_MIB=272 scripts/bench-push.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="${BENCH_DIR:-$root/work/bench}"
n="${BENCH_IMAGES:-4}"
mib="${BENCH_LAYER_MIB:-272}"
rm -rf "$work"; mkdir -p "$work"
say() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "build (release)"
cargo build -q --release --workspace --bins
B="$root/target/release/stoa-bundler"
U="$root/target/release/stoa-updater"
F="$root/target/release/stoa-fixtures"

say "images: $n x $mib MiB random layers (incompressible)"
"$F" bench-layout "$work/layout" "$n" "$mib"
{
  printf '[release]\nname = "bench"\nversion = "1.0.0"\n'
  for i in $(seq 0 $((n - 1))); do
    printf '\n[[images]]\nname = "registry.gostoa.dev/bench/app-%s:1.0.0"\nsource = "oci:%s:bench-%s"\n' "$i" "$work/layout" "$i"
  done
} > "$work/bench.toml"
"$B" keygen --out "$work/release" >/dev/null
t0=$(now)
"$B" build "$work/bench.toml" --key "$work/release.key" --out "$work/bench.tar.zst" --quiet >/dev/null
t1=$(now)
bundle_bytes=$(stat -c %s "$work/bench.tar.zst")
echo "bundle: $bundle_bytes bytes, built in $(echo "$t1 - $t0" | bc) s"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
start_registry() { # dir port
  mkdir -p "$1/data"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$1/data" "$2" > "$1/config.yml"
  docker-registry serve "$1/config.yml" >"$1/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$2/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "registry on $2 did not start"; exit 1
}
p1=$(free_port); start_registry "$work/reg-skopeo" "$p1"
p2=$(free_port); start_registry "$work/reg-updater" "$p2"

say "skopeo copy oci:… docker://… (each image)"
t0=$(now)
for i in $(seq 0 $((n - 1))); do
  skopeo copy -q --dest-tls-verify=false "oci:$work/layout:bench-$i" "docker://127.0.0.1:$p1/bench/app-$i:1.0.0"
done
t1=$(now)
skopeo_s=$(echo "$t1 - $t0" | bc)
echo "skopeo: $skopeo_s s"

say "stoa-updater apply (verify+stage, then push)"
mkdir -p "$work/trust"; cp "$work/release.pub" "$work/trust/"
site_cfg() { # state_dir file
  printf 'state_dir = "%s"\ntrust = "%s"\n\n[registry]\nurl = "http://127.0.0.1:%s"\nprefix = "site"\n' "$1" "$work/trust" "$p2" > "$2"
}
site_cfg "$work/state1" "$work/site1.toml"
/usr/bin/time -v "$U" --config "$work/site1.toml" apply "$work/bench.tar.zst" --json > "$work/apply1.json" 2> "$work/time1.txt"
push_s=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["apply"]["push_seconds"])' "$work/apply1.json")
stage_s=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["apply"]["stage_seconds"])' "$work/apply1.json")
up_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["apply"]["push"]["bytes_uploaded"])' "$work/apply1.json")
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time1.txt")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time1.txt")
echo "updater: push $push_s s ($up_bytes bytes uploaded), verify+stage $stage_s s, whole apply $wall, peak RSS $rss_kb KiB"

say "independent check: skopeo reads back every image the updater pushed"
for i in $(seq 0 $((n - 1))); do
  skopeo inspect --tls-verify=false --raw "docker://127.0.0.1:$p2/site/bench/app-$i:1.0.0" | sha256sum | cut -c1-16
done

say "re-apply from a fresh state folder against the same registry"
site_cfg "$work/state2" "$work/site2.toml"
"$U" --config "$work/site2.toml" apply "$work/bench.tar.zst" --json > "$work/apply2.json"
re_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["apply"]["push"]["bytes_uploaded"])' "$work/apply2.json")
re_skipped=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["apply"]["push"]["blobs_skipped"])' "$work/apply2.json")
echo "re-apply: $re_bytes blob bytes uploaded, $re_skipped blobs already present"

ratio=$(echo "scale=3; $push_s / $skopeo_s" | bc)
{
  echo "bundle bytes:              $bundle_bytes ($n images x $mib MiB layers)"
  echo "skopeo copy (all images):  $skopeo_s s"
  echo "stoa-updater push:         $push_s s  (ratio ${ratio} x skopeo; target <= 1.1)"
  echo "stoa-updater verify+stage: $stage_s s"
  echo "stoa-updater apply wall:   $wall"
  echo "stoa-updater peak RSS:     $rss_kb KiB (target <= 102400)"
  echo "re-apply blob bytes:       $re_bytes (target 0)"
} | tee "$work/results.txt"
[ "$re_bytes" -eq 0 ] || { echo "re-apply uploaded blob bytes"; exit 1; }
