#!/usr/bin/env bash
# Benchmark (issue 9): `stoa-bundler images` on the full upstream stack
# (postgresql-ha, opensearch, minio, vault from ../shared/upstream-charts,
# used in place), against the baseline measured in the same run: the slowest
# single `helm template` of those charts (dependencies vendored the same
# way). Target: images <= 1.10 x the slowest helm template (charts render in
# parallel; what is added is packaging, the dependency check, YAML scanning).
#
# Bitnami's `common` (oci://registry-1.docker.io/bitnamicharts) is served by a
# loopback docker-registry, pushed with real `helm push`, reached through a
# registries.conf (`--registries-conf`) mirroring Docker Hub's bitnamicharts.
#
# usage: scripts/bench-images.sh            env: RUNS (default 5; medians),
#        BENCH_DIR (work folder), STOA_HELM (default target/helm-bin/helm3),
#        STOA_UPSTREAM_CHARTS (default ../shared/upstream-charts),
#        PROFILE (debug|release, default debug)
set -euo pipefail

RUNS=${RUNS:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-$(mktemp -d /tmp/stoa-bench-images.XXXXXX)}
UP=${STOA_UPSTREAM_CHARTS:-$ROOT/../shared/upstream-charts}
HELM=${STOA_HELM:-$ROOT/target/helm-bin/helm3}
PROFILE=${PROFILE:-debug}
mkdir -p "$WORK"
export HELM_CONFIG_HOME="$WORK/helm-config" HELM_CACHE_HOME="$WORK/helm-cache"

command -v docker-registry >/dev/null || { echo "bench-images: docker-registry is required (scripts/install-deps.sh)" >&2; exit 2; }
[ -x "$HELM" ] || { echo "bench-images: Helm not at $HELM (scripts/get-helm.sh)" >&2; exit 2; }
[ -f "$UP/postgresql-ha/Chart.yaml" ] || { echo "bench-images: upstream charts not at $UP" >&2; exit 2; }

if [ "$PROFILE" = release ]; then
  (cd "$ROOT" && cargo build --release -q -p stoa-bundler)
else
  (cd "$ROOT" && cargo build -q --workspace --bins)
fi
B="$ROOT/target/$PROFILE/stoa-bundler"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HOST="127.0.0.1:$port"
cat >"$WORK/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry-data
http:
  addr: $HOST
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

# common at the versions the charts' Chart.lock files pin, and as it is
lockv=$(awk '/^- name: common/{f=1} f&&/version:/{print $2; exit}' "$UP/postgresql-ha/Chart.lock")
for v in "$lockv" "$(awk '/^version:/{print $2}' "$UP/common/Chart.yaml")"; do
  rm -rf "$WORK/common-$v"; cp -r "$UP/common" "$WORK/common-$v"
  sed -i "s/^version: .*/version: $v/" "$WORK/common-$v/Chart.yaml"
  "$HELM" package "$WORK/common-$v" -d "$WORK/pkgs" >/dev/null
  "$HELM" push "$WORK/pkgs/common-$v.tgz" "oci://$HOST/bitnamicharts" --plain-http >/dev/null 2>&1
done

charts=(postgresql-ha opensearch minio vault)
{
  printf '[release]\nname = "stack"\nversion = "1.0.0"\n'
  for c in "${charts[@]}"; do
    printf '\n[[charts]]\npath = "%s"\nrelease = "%s"\nnamespace = "%s"\n' "$UP/$c" "$c" "$c"
  done
} >"$WORK/stack.toml"
printf '[[registry]]\nprefix = "docker.io/bitnamicharts"\n\n[[registry.mirror]]\nlocation = "%s/bitnamicharts"\ninsecure = true\n' "$HOST" >"$WORK/registries.conf"
flags=(--helm "$HELM" --registries-conf "$WORK/registries.conf" --cache "$WORK/cache")

# the baseline's charts: each a copy with common vendored like Helm does
for c in "${charts[@]}"; do
  rm -rf "$WORK/base/$c"; mkdir -p "$WORK/base"; cp -r "$UP/$c" "$WORK/base/$c"
  if grep -q '^dependencies:' "$UP/$c/Chart.yaml"; then
    mkdir -p "$WORK/base/$c/charts"
    "$HELM" pull "oci://$HOST/bitnamicharts/common" --version "$lockv" --plain-http -d "$WORK/base/$c/charts" >/dev/null 2>&1
  fi
done

now() { date +%s.%N; }
# wall and CPU (user+sys) seconds of one command, appended to $1.times / $1.cpu
timed() {
  local f=$1; shift
  /usr/bin/time -f '%e %U %S' -o "$WORK/t.txt" "$@" >/dev/null
  awk '{print $1}' "$WORK/t.txt" >>"$f.times"
  awk '{print $2 + $3}' "$WORK/t.txt" >>"$f.cpu"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

"$B" images "$WORK/stack.toml" "${flags[@]}" >"$WORK/images.txt"   # warm the cache
uses=$(tail -1 "$WORK/images.txt")

: >"$WORK/images.times"; : >"$WORK/images.cpu"
for _ in $(seq "$RUNS"); do
  timed "$WORK/images" "$B" images "$WORK/stack.toml" "${flags[@]}" --json
done
img=$(median <"$WORK/images.times"); img_cpu=$(median <"$WORK/images.cpu")

slowest=0; slowest_chart=""; sum=0; sum_cpu=0
declare -A per
for c in "${charts[@]}"; do
  : >"$WORK/$c.times"; : >"$WORK/$c.cpu"
  for _ in $(seq "$RUNS"); do
    timed "$WORK/$c" "$HELM" template "$c" "$WORK/base/$c" --namespace "$c" --kube-version 1.28.0
  done
  per[$c]=$(median <"$WORK/$c.times")
  sum=$(echo "$sum + ${per[$c]}" | bc -l)
  sum_cpu=$(echo "$sum_cpu + $(median <"$WORK/$c.cpu")" | bc -l)
  if (( $(echo "${per[$c]} > $slowest" | bc -l) )); then slowest=${per[$c]}; slowest_chart=$c; fi
done

ratio=$(echo "$img / $slowest" | bc -l)
ok=$(echo "$ratio <= 1.10" | bc -l)
printf 'bench-images: %s (%s binaries), median of %s runs, load %s\n' "$(date -u +%F)" "$PROFILE" "$RUNS" "$(cut -d' ' -f1-3 /proc/loadavg)"
for c in "${charts[@]}"; do printf '  helm template %-14s %.3f s\n' "$c" "${per[$c]}"; done
printf '  stoa-bundler images (4 charts, parallel): %.3f s  (%s)\n' "$img" "$uses"
printf '  slowest single helm template: %s %.3f s\n' "$slowest_chart" "$slowest"
printf '  ratio %.2f (target <= 1.10: %s)\n' "$ratio" "$([ "$ok" = 1 ] && echo yes || echo no)"
printf '  sum of the 4 helm templates (one after another): %.3f s; images / sum = %.2f\n' "$sum" "$(echo "$img / $sum" | bc -l)"
printf '  CPU (user+sys): images %.3f s, the 4 helm templates %.3f s; images / helm = %.2f\n' "$img_cpu" "$sum_cpu" "$(echo "$img_cpu / $sum_cpu" | bc -l)"
printf '  cores: %s\n' "$(nproc)"
