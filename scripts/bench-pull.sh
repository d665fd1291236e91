#!/usr/bin/env bash
# Benchmark: building a bundle from a loopback docker-registry versus the
# baseline "skopeo copy docker://… oci:… of the same images, then build from
# that layout", measured in the same run. Targets (issue 3):
#   pull-build wall time <= 1.1 x baseline, peak RSS <= 100 MiB.
#
# usage: scripts/bench-pull.sh [images] [layer-MiB]     (default 4 x 256 MiB)
# env:   BENCH_DIR (work folder, default a temp dir), RUNS (default 2, best
#        of each is compared), JOBS (bundler --jobs, default 4)
set -euo pipefail

IMAGES=${1:-4}
LAYER_MIB=${2:-256}
RUNS=${RUNS:-2}
JOBS=${JOBS:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-$(mktemp -d /tmp/stoa-bench-pull.XXXXXX)}
mkdir -p "$WORK"

for tool in docker-registry skopeo /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-pull: $tool is required (apt-get install docker-registry skopeo time)" >&2; exit 2; }
done

(cd "$ROOT" && cargo build --release --workspace --bins -q)
BIN="$ROOT/target/release"

now() { date +%s.%N; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HOST="127.0.0.1:$port"

cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry-data
http:
  addr: $HOST
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

echo "bench-pull: $IMAGES images x $LAYER_MIB MiB incompressible layers, registry $HOST, work $WORK"
if [ ! -f "$WORK/src/index.json" ]; then
  "$BIN/stoa-fixtures" bench-layout "$WORK/src" "$IMAGES" "$LAYER_MIB"
fi
for i in $(seq 0 $((IMAGES - 1))); do
  skopeo copy -q --preserve-digests --dest-tls-verify=false \
    "oci:$WORK/src:bench-$i" "docker://$HOST/bench/img:bench-$i"
done

[ -f "$WORK/k.key" ] || "$BIN/stoa-bundler" keygen --out "$WORK/k" >/dev/null
{
  printf '[release]\nname = "bench"\nversion = "1.0.0"\n'
  for i in $(seq 0 $((IMAGES - 1))); do
    printf '[[images]]\nname = "%s/bench/img:bench-%s"\n' "$HOST" "$i"
  done
} >"$WORK/pull.toml"
{
  printf '[release]\nname = "bench"\nversion = "1.0.0"\n'
  for i in $(seq 0 $((IMAGES - 1))); do
    printf '[[images]]\nname = "%s/bench/img:bench-%s"\nsource = "oci:%s/copy:bench-%s"\n' "$HOST" "$i" "$WORK" "$i"
  done
} >"$WORK/layout.toml"

best_base=""; best_pull=""; best_rss=0
export SOURCE_DATE_EPOCH=1700000000
for run in $(seq "$RUNS"); do
  # baseline: skopeo copy every image into a layout, then build from it
  rm -rf "$WORK/copy" "$WORK/base.stoa"
  t0=$(now)
  for i in $(seq 0 $((IMAGES - 1))); do
    skopeo copy -q --preserve-digests --src-tls-verify=false \
      "docker://$HOST/bench/img:bench-$i" "oci:$WORK/copy:bench-$i"
  done
  t1=$(now)
  rm -f "$WORK/base.stoa"
  "$BIN/stoa-bundler" build "$WORK/layout.toml" --key "$WORK/k.key" --out "$WORK/base.stoa" -q >/dev/null
  t2=$(now)
  # ours: pull from the registry with an empty cache, build
  rm -rf "$WORK/cache" "$WORK/pull.stoa"
  t3=$(now)
  /usr/bin/time -v -o "$WORK/time.txt" "$BIN/stoa-bundler" build "$WORK/pull.toml" --key "$WORK/k.key" \
    --out "$WORK/pull.stoa" --cache "$WORK/cache" --insecure-registry "$HOST" --jobs "$JOBS" -q >/dev/null
  t4=$(now)
  rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$WORK/time.txt")
  base=$(echo "$t2 - $t0" | bc -l); copy=$(echo "$t1 - $t0" | bc -l); pull=$(echo "$t4 - $t3" | bc -l)
  printf 'run %s: baseline %.2f s (skopeo copy %.2f s + build %.2f s), pull-build %.2f s, peak RSS %d KiB\n' \
    "$run" "$base" "$copy" "$(echo "$t2 - $t1" | bc -l)" "$pull" "$rss"
  if [ -z "$best_base" ] || [ "$(echo "$base < $best_base" | bc -l)" = 1 ]; then best_base=$base; fi
  if [ -z "$best_pull" ] || [ "$(echo "$pull < $best_pull" | bc -l)" = 1 ]; then best_pull=$pull; fi
  [ "$rss" -gt "$best_rss" ] && best_rss=$rss
done

# the same content either way (digests recorded, bundles comparable)
"$BIN/stoa-bundler" inspect --json "$WORK/pull.stoa" >"$WORK/pull.json"
"$BIN/stoa-bundler" inspect --json "$WORK/base.stoa" >"$WORK/base.json"
python3 - "$WORK/pull.json" "$WORK/base.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
da = sorted((i["name"], i["digest"]) for i in a["images"])
db = sorted((i["name"], i["digest"]) for i in b["images"])
assert da == db, (da, db)
EOF

ratio=$(echo "$best_pull / $best_base" | bc -l)
rss_mib=$(echo "$best_rss / 1024" | bc -l)
printf 'bench-pull: best baseline %.2f s, best pull-build %.2f s, ratio %.3f (target <= 1.10); peak RSS %.1f MiB (target <= 100)\n' \
  "$best_base" "$best_pull" "$ratio" "$rss_mib"
ok=1
[ "$(echo "$ratio <= 1.10" | bc -l)" = 1 ] || ok=0
[ "$(echo "$rss_mib <= 100" | bc -l)" = 1 ] || ok=0
[ -n "${BENCH_DIR:-}" ] || rm -rf "$WORK"
if [ $ok = 1 ]; then echo "bench-pull: PASS"; else echo "bench-pull: FAIL"; exit 1; fi
