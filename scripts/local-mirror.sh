#!/usr/bin/env bash
# A local mirror of the Full On-Premises stack's upstream locations, for a
# host without internet (tests, the demo, CI):
#   - a loopback docker-registry holding stand-in images under the upstream
#     images' names (docker.io/bitnami/…, docker.io/hashicorp/…, …; made by
#     `stoa-fixtures stack-images`, copied with skopeo) and the bitnami OCI
#     charts (postgresql-ha, minio, common) pushed with REAL Helm
#     (`helm package` + `helm push --plain-http`) to <mirror>/docker.io/bitnamicharts;
#   - a classic Helm repository (`helm repo index` + python3's HTTP server on
#     loopback) for opensearch and vault;
#   - upstream signatures for the docker.io/bitnami/* images, as bitnami
#     publishes them with cosign: a P-256 key generated per mirror
#     (<dir>/upstream-keys/bitnami.key, never in the repository; the public
#     half <dir>/upstream-keys/bitnami.pub is what a release's [[signers]]
#     names), the simple-signing payload signed with `openssl dgst -sha256
#     -sign`, pushed as <repo>:sha256-<hex>.sig (docs/RELEASE-MANIFEST.md,
#     *[[signers]]*);
#   - <dir>/registries.conf (containers-registries.conf v2) sending docker.io
#     (registry-1.docker.io too), quay.io, ghcr.io and registry.k8s.io pulls
#     to the mirror first, and <dir>/bundler-flags with the matching
#     `--registries-conf … --chart-repo-mirror …` flags for stoa-bundler build.
# The charts come from ../shared/upstream-charts (STOA_UPSTREAM_CHARTS),
# unmodified and never copied into the repository. postgresql-ha and minio
# are published with `common` vendored into charts/, as bitnami publishes
# them (helm package refuses them otherwise).
#
#   scripts/local-mirror.sh start <dir>   # prints the bundler flags
#   scripts/local-mirror.sh stop <dir>    # stops what start started
#
# Needs: docker-registry, skopeo, python3, openssl (scripts/install-deps.sh), real
# Helm 3 (STOA_HELM, default target/helm-bin/helm3) and stoa-fixtures
# (STOA_FIXTURES, default target/debug/stoa-fixtures, built when missing).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop <dir>" >&2; exit 2; }

stop() {
  if [ -f "$dir/pids" ]; then
    while read -r p; do kill "$p" 2>/dev/null || true; done < "$dir/pids"
    rm -f "$dir/pids"
  fi
}
case "$cmd" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop <dir>" >&2; exit 2 ;;
esac

helm="${STOA_HELM:-$root/target/helm-bin/helm3}"
fixtures="${STOA_FIXTURES:-$root/target/debug/stoa-fixtures}"
charts="${STOA_UPSTREAM_CHARTS:-$root/../shared/upstream-charts}"
[ -x "$helm" ] || { echo "local-mirror: real Helm 3 missing at $helm (scripts/install-deps.sh)" >&2; exit 3; }
[ -f "$charts/postgresql-ha/Chart.yaml" ] || { echo "local-mirror: upstream charts missing at $charts (STOA_UPSTREAM_CHARTS)" >&2; exit 3; }
for t in docker-registry skopeo python3 openssl; do
  command -v "$t" >/dev/null || { echo "local-mirror: $t missing (scripts/install-deps.sh)" >&2; exit 3; }
done
if [ ! -x "$fixtures" ]; then
  cargo build -q --manifest-path "$root/Cargo.toml" -p stoa-e2e --bin stoa-fixtures
fi

stop
rm -rf "$dir"; mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 300); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "local-mirror: nothing listens on 127.0.0.1:$1 ($2)" >&2; exit 3
}

# --- the registry ---------------------------------------------------------------
reg_port="$(free_port)"
mkdir -p "$dir/registry"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$dir/registry/data" "$reg_port" > "$dir/registry/config.yml"
docker-registry serve "$dir/registry/config.yml" >"$dir/registry/log" 2>&1 </dev/null &
echo $! >> "$dir/pids"
wait_port "$reg_port" docker-registry
mirror="127.0.0.1:$reg_port"

# --- stand-in images under the upstream names -----------------------------------
"$fixtures" stack-images "$dir/images" > "$dir/images.txt"
while read -r ref name; do
  skopeo copy -q --all --dest-tls-verify=false "oci:$dir/images:$ref" "docker://$mirror/$name" >/dev/null
done < "$dir/images.txt"

# --- upstream signatures (cosign's format) for the bitnami images -----------------
keys="$dir/upstream-keys"; mkdir -p "$keys"
openssl ecparam -name prime256v1 -genkey -noout -out "$keys/bitnami.key" 2>/dev/null
chmod 600 "$keys/bitnami.key"
openssl ec -pubout -in "$keys/bitnami.key" -out "$keys/bitnami.pub" 2>/dev/null
while read -r ref name; do
  case "$name" in docker.io/bitnami/*) ;; *) continue ;; esac
  repo="${name%:*}"
  digest="sha256:$(skopeo inspect --raw --tls-verify=false "docker://$mirror/$name" | sha256sum | cut -d' ' -f1)"
  sig="$dir/sigs/$ref"; mkdir -p "$sig/blobs/sha256"
  printf '{"critical":{"identity":{"docker-reference":"%s"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' \
    "$repo" "$digest" > "$sig/payload"
  openssl dgst -sha256 -sign "$keys/bitnami.key" -out "$sig/payload.sig" "$sig/payload"
  python3 - "$sig" <<'PY'
import base64, hashlib, json, os, sys
d = sys.argv[1]
def put(data):
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(d, "blobs/sha256", h), "wb").write(data)
    return "sha256:" + h, len(data)
payload = open(os.path.join(d, "payload"), "rb").read()
sig = open(os.path.join(d, "payload.sig"), "rb").read()
pd, ps = put(payload)
cfg = json.dumps({"architecture": "", "created": "0001-01-01T00:00:00Z", "history": [{"created": "0001-01-01T00:00:00Z"}],
                  "os": "", "rootfs": {"type": "layers", "diff_ids": [pd]}, "config": {}}, separators=(",", ":")).encode()
cd, cs = put(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                  "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": pd, "size": ps,
                              "annotations": {"dev.cosignproject.cosign/signature": base64.b64encode(sig).decode()}}]},
                 separators=(",", ":")).encode()
md, ms = put(man)
open(os.path.join(d, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
           "annotations": {"org.opencontainers.image.ref.name": "sig"}}]}, open(os.path.join(d, "index.json"), "w"))
PY
  skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$sig:sig" \
    "docker://$mirror/$repo:sha256-${digest#sha256:}.sig" >/dev/null
done < "$dir/images.txt"

# --- OCI charts with real Helm ----------------------------------------------------
export HELM_CONFIG_HOME="$dir/helm/config" HELM_CACHE_HOME="$dir/helm/cache" HELM_DATA_HOME="$dir/helm/data"
pkg="$dir/packages"; mkdir -p "$pkg" "$dir/work"
"$helm" package "$charts/common" -d "$pkg" >/dev/null
for c in postgresql-ha minio; do
  cp -r "$charts/$c" "$dir/work/$c"
  mkdir -p "$dir/work/$c/charts"
  cp "$pkg"/common-*.tgz "$dir/work/$c/charts/"
  "$helm" package "$dir/work/$c" -d "$pkg" >/dev/null
done
for t in "$pkg"/*.tgz; do
  "$helm" push "$t" "oci://$mirror/docker.io/bitnamicharts" --plain-http >/dev/null 2>>"$dir/helm-push.log" \
    || { echo "local-mirror: helm push $t failed:" >&2; cat "$dir/helm-push.log" >&2; exit 3; }
done

# --- a classic chart repository ---------------------------------------------------
repo="$dir/repo"; mkdir -p "$repo/opensearch" "$repo/hashicorp"
"$helm" package "$charts/opensearch" -d "$repo/opensearch" >/dev/null
"$helm" package "$charts/vault" -d "$repo/hashicorp" >/dev/null
"$helm" repo index "$repo/opensearch"
"$helm" repo index "$repo/hashicorp"
repo_port="$(free_port)"
python3 -m http.server "$repo_port" --bind 127.0.0.1 --directory "$repo" >"$dir/repo.log" 2>&1 </dev/null &
echo $! >> "$dir/pids"
wait_port "$repo_port" "chart repository"
chart_mirror="http://127.0.0.1:$repo_port"

# --- what the build host reads -----------------------------------------------------
{
  echo "# The local mirror (scripts/local-mirror.sh): upstream registries served"
  echo "# from $mirror first; containers-registries.conf(5), version 2."
  for host in docker.io quay.io ghcr.io registry.k8s.io; do
    printf '\n[[registry]]\nprefix = "%s"\n\n[[registry.mirror]]\nlocation = "%s/%s"\ninsecure = true\n' "$host" "$mirror" "$host"
  done
} > "$dir/registries.conf"
cat > "$dir/bundler-flags" <<EOF
--registries-conf $dir/registries.conf
--chart-repo-mirror https://opensearch-project.github.io/helm-charts=$chart_mirror/opensearch
--chart-repo-mirror https://helm.releases.hashicorp.com=$chart_mirror/hashicorp
--insecure-registry 127.0.0.1:$repo_port
EOF
echo "$mirror" > "$dir/registry-host"
echo "$chart_mirror" > "$dir/chart-repo-url"
echo "local mirror: registry $mirror ($(wc -l < "$dir/images.txt") images, $(ls "$pkg" | wc -l) OCI charts), chart repository $chart_mirror" >&2
tr '\n' ' ' < "$dir/bundler-flags"; echo
