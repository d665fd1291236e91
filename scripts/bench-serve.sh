#!/usr/bin/env bash
# Serve benchmark (issue 19, Performance): `stoa-updater serve` against
# docker-registry serving the same images (BENCH_IMAGES x BENCH_LAYER_MIB MiB
# random layers, default 8 x 128 MiB = 1 GiB) to 8 parallel `skopeo copy`
# pulls, in the same run. Apply pushes the bundle to a docker-registry on
# loopback (so both hold the same names and bytes: the registry its
# storage, serve the site's store); then, for each of BENCH_ROUNDS rounds,
# each server is started fresh and the 8 pulls (pull i takes image
# i mod BENCH_IMAGES into an OCI layout on /dev/shm) are timed from the first
# start to the last end. Peak RSS of each server: VmHWM in
# /proc/<pid>/status after its pulls (the process was started for them);
# CPU: utime+stime from /proc/<pid>/stat. Every pulled layout's manifest
# digest (skopeo checks each blob against it) must be the same from both
# servers in every run. Figures go to stdout and $work/results.txt (the
# table in BENCHMARKS.md is copied from them).
#
#   BENCH_IMAGES=8 BENCH_LAYER_MIB=128 BENCH_ROUNDS=3 scripts/bench-serve.sh
#   BENCH_PROFILE=dev BENCH_IMAGES=2 BENCH_LAYER_MIB=4 BENCH_ROUNDS=1 scripts/bench-serve.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="${BENCH_DIR:-$root/work/bench-serve}"
pulls_dir="${BENCH_PULL_DIR:-/dev/shm/stoa-bench-serve-$$}"
n="${BENCH_IMAGES:-8}"
mib="${BENCH_LAYER_MIB:-128}"
rounds="${BENCH_ROUNDS:-3}"
clients=8
rm -rf "$work" "$pulls_dir"; mkdir -p "$work" "$pulls_dir"
say() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for tool in docker-registry skopeo python3 curl bc; do
  command -v "$tool" >/dev/null || { echo "bench-serve: $tool is required (scripts/install-deps.sh)" >&2; exit 2; }
done

profile="${BENCH_PROFILE:-release}"  # "dev" for a quick check of the script
say "build ($profile)"
cargo build -q --profile "$profile" -p stoa-updater -p stoa-bundler -p stoa-e2e --bins
out="$root/target/$([ "$profile" = dev ] && echo debug || echo "$profile")"
B="$out/stoa-bundler"
U="$out/stoa-updater"
F="$out/stoa-fixtures"

say "images: $n x $mib MiB random layers (incompressible)"
"$F" bench-layout "$work/layout" "$n" "$mib"
{
  printf '[release]\nname = "bench"\nversion = "1.0.0"\n'
  for i in $(seq 0 $((n - 1))); do
    printf '\n[[images]]\nname = "registry.gostoa.dev/bench/app-%s:1.0.0"\nsource = "oci:%s:bench-%s"\n' "$i" "$work/layout" "$i"
  done
} > "$work/bench.toml"
"$B" keygen --out "$work/release" >/dev/null
"$B" build "$work/bench.toml" --key "$work/release.key" --out "$work/bench.tar.zst" --quiet >/dev/null
rm -rf "$work/layout"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$pulls_dir"
}
trap cleanup EXIT
reg_port=$(free_port)
mkdir -p "$work/reg/data"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$work/reg/data" "$reg_port" > "$work/reg/config.yml"
wait_up() { # url pid
  for _ in $(seq 200); do
    curl -fsSk "$1/v2/" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "bench-serve: server $2 ended"; exit 1; }
    sleep 0.05
  done
  echo "bench-serve: $1 did not start"; exit 1
}
start_registry() {
  docker-registry serve "$work/reg/config.yml" >>"$work/reg/log" 2>&1 &
  server_pid=$!; pids+=("$server_pid")
  wait_up "http://127.0.0.1:$reg_port" "$server_pid"
}
stop_server() { kill "$1"; wait "$1" 2>/dev/null || true; }

say "apply: the bundle pushed to docker-registry (its store is what serve serves)"
start_registry
mkdir -p "$work/trust"; cp "$work/release.pub" "$work/trust/"
serve_port=$(free_port)
printf 'state_dir = "%s"\ntrust = "%s"\n\n[registry]\nurl = "http://127.0.0.1:%s"\nprefix = "site"\n\n[serve]\nlisten = "127.0.0.1:%s"\n' \
  "$work/state" "$work/trust" "$reg_port" "$serve_port" > "$work/site.toml"
"$U" --config "$work/site.toml" apply "$work/bench.tar.zst" >/dev/null
stop_server "$server_pid"

start_serve() {
  "$U" --config "$work/site.toml" serve >>"$work/serve.log" 2>&1 &
  server_pid=$!; pids+=("$server_pid")
  wait_up "http://127.0.0.1:$serve_port" "$server_pid"
}
clk=$(getconf CLK_TCK)
# one measured run: start the server fresh, 8 parallel pulls, its figures
run() { # name port start_fn
  local name=$1 port=$2
  "$3"
  rm -rf "${pulls_dir:?}"/*
  local t0 t1 ok=0
  t0=$(now)
  local jobs=()
  for c in $(seq 0 $((clients - 1))); do
    skopeo copy -q --src-tls-verify=false \
      "docker://127.0.0.1:$port/site/bench/app-$((c % n)):1.0.0" "oci:$pulls_dir/$c:x" &
    jobs+=($!)
  done
  for j in "${jobs[@]}"; do wait "$j" || ok=1; done
  t1=$(now)
  [ "$ok" -eq 0 ] || { echo "bench-serve: a pull from $name failed"; exit 1; }
  local hwm cpu
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
  cpu=$(awk -v k="$clk" '{printf "%.2f", ($14 + $15) / k}' "/proc/$server_pid/stat")
  stop_server "$server_pid"
  # what each pull got (skopeo checked every blob against it)
  for c in $(seq 0 $((clients - 1))); do
    printf '%s %s\n' "$c" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$pulls_dir/$c/index.json")" >> "$work/digests-$name.txt"
  done
  local wall
  wall=$(echo "$t1 - $t0" | bc)
  printf '%s %s %s %s\n' "$name" "$wall" "$hwm" "$cpu" | tee -a "$work/runs.txt"
}

total_mib=$((clients * mib))  # each pull takes one image: one layer of $mib MiB
say "$rounds rounds: $clients parallel skopeo copy pulls, $total_mib MiB served, each server fresh"
: > "$work/runs.txt"; rm -f "$work"/digests-*.txt
for r in $(seq 1 "$rounds"); do
  # alternate which server goes first, so neither always gets a warm cache
  if [ $((r % 2)) -eq 1 ]; then
    run docker-registry "$reg_port" start_registry
    run serve "$serve_port" start_serve
  else
    run serve "$serve_port" start_serve
    run docker-registry "$reg_port" start_registry
  fi
done

# both servers gave every pull the same manifest, run after run
[ "$(sort -u "$work/digests-serve.txt")" = "$(sort -u "$work/digests-docker-registry.txt")" ] &&
  [ "$(sort -u "$work/digests-serve.txt" | wc -l)" -eq "$clients" ] ||
  { echo "bench-serve: serve and docker-registry served different manifests"; exit 1; }
python3 - "$work/runs.txt" "$total_mib" "$clients" <<'EOF' | tee "$work/results.txt"
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, wall, hwm, cpu = line.split()
    runs.setdefault(name, []).append((float(wall), int(hwm), float(cpu)))
mib, clients = int(sys.argv[2]), int(sys.argv[3])
med = {k: statistics.median(w for w, _, _ in v) for k, v in runs.items()}
print(f"{clients} parallel skopeo copy pulls, {mib} MiB served in all, {len(runs['serve'])} rounds (median; each run)")
for k in ("docker-registry", "serve"):
    v = runs[k]
    print(f"{k:16} wall {med[k]:6.2f} s ({', '.join(f'{w:.2f}' for w, _, _ in v)}), "
          f"{mib / med[k]:6.0f} MiB/s, peak RSS {max(h for _, h, _ in v) / 1024:6.1f} MiB "
          f"({', '.join(f'{h / 1024:.1f}' for _, h, _ in v)}), CPU {statistics.median(c for _, _, c in v):.2f} s")
print(f"serve / docker-registry wall: {med['serve'] / med['docker-registry']:.3f} (target <= 1.0); "
      f"serve peak RSS {max(h for _, h, _ in runs['serve']) / 1024:.1f} MiB (target <= 32)")
EOF
