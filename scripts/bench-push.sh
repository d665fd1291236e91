#!/usr/bin/env bash
# Push benchmark (issues 4 and 23): the images of a >= 1 GiB bundle put into
# a fresh docker-registry on loopback, in the same run, RUNS rounds
# (default 3, medians reported):
#   - baseline: `skopeo copy oci:… docker://…` of the same images (no
#     verification, nothing kept on site);
#   - `stoa-updater apply` (verify + stage + push; blobs are pushed while
#     the bundle is staged) with `[registry] parallel = 1` and with the
#     default 4, each into its own fresh registry from a fresh state
#     folder, under /usr/bin/time -v, in alternating order;
#   - a re-apply from a fresh state folder against the registry that has
#     every blob: it must upload no blob bytes.
# Figures go to stdout and $work/results.txt.
#
#   BENCH_IMAGES=4 BENCH_LAYER_MIB=272 RUNS=3 scripts/bench-push.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="${BENCH_DIR:-$root/work/bench}"
n="${BENCH_IMAGES:-4}"
mib="${BENCH_LAYER_MIB:-272}"
runs="${RUNS:-3}"
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
  rm -rf "$1"; mkdir -p "$1/data"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$1/data" "$2" > "$1/config.yml"
  docker-registry serve "$1/config.yml" >"$1/log" 2>&1 &
  pids+=($!); last_pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$2/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "registry on $2 did not start"; exit 1
}
mkdir -p "$work/trust"; cp "$work/release.pub" "$work/trust/"
site_cfg() { # state_dir file port parallel
  rm -rf "$1"
  printf 'state_dir = "%s"\ntrust = "%s"\n\n[registry]\nurl = "http://127.0.0.1:%s"\nprefix = "site"\nparallel = %s\n' "$1" "$work/trust" "$3" "$4" > "$2"
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["apply"]
for k in sys.argv[2].split("."): d=d[k]
print(d)' "$1" "$2"; }
wall_s() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$1"; }
rss_kib() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
apply_timed() { # name config
  sync # no dirty pages of the step before charged to this one
  /usr/bin/time -v "$U" --config "$2" apply "$work/bench.tar.zst" --json --quiet > "$work/$1.json" 2> "$work/$1.time" \
    || { cat "$work/$1.time"; exit 1; }
}
tck=$(getconf CLK_TCK)
proc_cpu() { awk -v t="$tck" '{printf "%.2f\n", ($14 + $15) / t}' "/proc/$1/stat"; }
cpu_s() { awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f\n", s}' "$1"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

rows="$work/rows.txt"; : > "$rows"
for r in $(seq "$runs"); do
  say "round $r of $runs (load $(cut -d' ' -f1-3 /proc/loadavg))"
  p0=$(free_port); start_registry "$work/reg-skopeo" "$p0"; pid0=$last_pid
  p1=$(free_port); start_registry "$work/reg-p1" "$p1"
  p4=$(free_port); start_registry "$work/reg-p4" "$p4"; pid4=$last_pid
  sync
  t0=$(now)
  /usr/bin/time -v -o "$work/skopeo.time" bash -c 'for i in $(seq 0 $(('"$n"' - 1))); do
    skopeo copy -q --dest-tls-verify=false "oci:'"$work"'/layout:bench-$i" "docker://127.0.0.1:'"$p0"'/bench/app-$i:1.0.0"
  done'
  skopeo_s=$(echo "$(now) - $t0" | bc)
  # CPU seconds of each side, the registry's included
  cpu_sk=$(echo "$(cpu_s "$work/skopeo.time") + $(proc_cpu "$pid0")" | bc)
  site_cfg "$work/state-p1" "$work/p1.toml" "$p1" 1
  site_cfg "$work/state-p4" "$work/p4.toml" "$p4" 4
  # each order in turn: the second apply of a round has the first's disk writes behind it
  if [ $((r % 2)) -eq 1 ]; then apply_timed p1 "$work/p1.toml"; apply_timed p4 "$work/p4.toml"
  else apply_timed p4 "$work/p4.toml"; apply_timed p1 "$work/p1.toml"; fi
  cpu_p4=$(echo "$(cpu_s "$work/p4.time") + $(proc_cpu "$pid4")" | bc)
  # every pushed manifest reads back (skopeo, an independent client)
  for i in $(seq 0 $((n - 1))); do
    skopeo inspect --tls-verify=false --raw "docker://127.0.0.1:$p4/site/bench/app-$i:1.0.0" > /dev/null
  done
  site_cfg "$work/state-re" "$work/re.toml" "$p4" 4; apply_timed re "$work/re.toml"
  re_bytes=$(field "$work/re.json" push.bytes_uploaded)
  [ "$re_bytes" -eq 0 ] || { echo "re-apply uploaded $re_bytes blob bytes"; exit 1; }
  printf '%s %s %s %s %s %s %s %s %s %s %s %s %s %s %s %s\n' "$skopeo_s" \
    "$(wall_s "$work/p1.time")" "$(field "$work/p1.json" stage_seconds)" "$(field "$work/p1.json" push_seconds)" \
    "$(wall_s "$work/p4.time")" "$(field "$work/p4.json" stage_seconds)" "$(field "$work/p4.json" push_seconds)" \
    "$(wall_s "$work/re.time")" "$(field "$work/re.json" push_seconds)" "$(rss_kib "$work/p4.time")" \
    "$(field "$work/p4.json" push.blobs_mounted)" "$(field "$work/re.json" push.blobs_skipped)" \
    "$(field "$work/p4.json" pushed_while_staging.bytes_uploaded)" "$(field "$work/p4.json" push.bytes_uploaded)" \
    "$cpu_sk" "$cpu_p4" | tee -a "$rows"
  cleanup; pids=()
  rm -rf "$work/reg-skopeo" "$work/reg-p1" "$work/reg-p4" "$work"/state-*
done

col() { awk -v c="$1" '{print $c}' "$rows" | median; }
sk=$(col 1); a1=$(col 2); st1=$(col 3); pu1=$(col 4); a4=$(col 5); st4=$(col 6); pu4=$(col 7)
re=$(col 8); repu=$(col 9); rss=$(awk '{print $10}' "$rows" | sort -g | tail -1)
ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }
{
  echo "bundle bytes:                        $bundle_bytes ($n images x $mib MiB layers), medians of $runs rounds"
  echo "skopeo copy (baseline):              $sk s"
  echo "apply, parallel = 1:                 $a1 s  ($(ratio "$a1" "$sk") x skopeo; stage $st1 s, push $pu1 s)"
  echo "apply, parallel = 4:                 $a4 s  ($(ratio "$a4" "$sk") x skopeo, target <= 0.8; stage $st4 s, push $pu4 s = $(ratio "$pu4" "$sk") x skopeo)"
  echo "push step, parallel 4 over 1:        $(ratio "$pu4" "$pu1")"
  echo "blobs mounted (parallel = 4):        $(awk '{print $11}' "$rows" | head -1)"
  echo "pushed while staging (parallel = 4): $(awk '{print $13}' "$rows" | head -1) of $(awk '{print $14}' "$rows" | head -1) bytes uploaded"
  echo "CPU, client + registry:              skopeo $(col 15) s, apply (parallel = 4) $(col 16) s: on $(nproc) cores the apply takes at least $(echo "scale=2; $(col 16) / $(nproc)" | bc) s = $(ratio "$(echo "scale=3; $(col 16) / $(nproc)" | bc)" "$sk") x skopeo"
  echo "re-apply, fresh state, every blob:   $re s  ($(ratio "$re" "$a4") x the first apply, target <= 0.2; push $repu s; 0 blob bytes; $(awk '{print $12}' "$rows" | head -1) blobs present)"
  echo "peak RSS (largest apply):            $rss KiB (target <= 32768)"
} | tee "$work/results.txt"
