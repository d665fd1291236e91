#!/usr/bin/env bash
# The main job, end to end, with STOA's Full On-Premises stack (PostgreSQL HA,
# OpenSearch, MinIO and Vault from their upstream Helm charts, then STOA).
# Release engineer, on a host without internet: start the local mirror of the
# upstream locations (scripts/local-mirror.sh: stand-in images under the
# upstream names, the upstream charts pushed with real Helm, a classic chart
# repository, a registries.conf), build the stack release through it (twice:
# reproducible), inspect it, verify it as a site would, check it with
# tar/openssl/skopeo as independent readers, extract its verified content, and
# build the earlier releases 2.0.0 and 2.1.0 the same way; 2.0.0 also as split
# parts with parity, one part damaged and one lost, verified, repaired and
# applied from the parts. Site: start a throwaway docker-registry and
# PostgreSQL on loopback (and stand-ins for Helm and for the API server's /version, which the
# preflight asks through real kubectl: no Kubernetes can run here), apply 2.0.0, upgrade to 2.1.0,
# show the final manifests 2.3.0 would apply (`plan --render`: every chart
# rendered by real Helm through the updater's post-renderer; the demo fails
# unless every image line is <site registry>/<prefix>/…@sha256:…), write the
# signed change report (`plan --report`) and screenshot it in headless
# Chromium, show status and history, roll back,
# and show the schema, the registry tags and the Helm releases at each point.
# Then trust: move the site to a signed root, rotate the release key once (the
# new root shipped inside the next bundle), and show the site refusing a
# bundle signed only by the removed key; print the audit log. Then a failed
# apply carried back as a support bundle; a 2.3.0 that carries the next
# updater, Helm and kubectl ([[tools]]); a day-0 site with no registry and
# `[helm] bin = "bundled"` applies it, a real containerd pulls the stack by
# its original names from `serve`; the installed updater self-updates from
# the bundle and reverts.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="${DEMO_DIR:-$root/work/demo}"
rm -rf "$work"; mkdir -p "$work"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "install what a fresh machine lacks (skopeo, docker-registry, PostgreSQL, …)"
scripts/install-deps.sh

say "build the two programs"
cargo build -q --workspace --bins
B="$root/target/debug/stoa-bundler"
U="$root/target/debug/stoa-updater"
# build renders each chart with real Helm to check every image is carried
# (scripts/install-deps.sh puts Helm in target/helm-bin)
export STOA_HELM="${STOA_HELM:-$root/target/helm-bin/helm3}"

say "site operator: install the updater from its Debian package (scripts/package.sh; dpkg into a scratch root)"
# The demo's binaries packaged as they are (STOA_BIN_DIR), the updater's .deb
# installed with real dpkg into $work/debroot (its own admindir and log: the
# host's dpkg database is not touched); from here on the demo runs the
# installed /usr/bin/stoa-updater of that root.
STOA_BIN_DIR="$root/target/debug" scripts/package.sh "$work/deb"
debroot="$work/debroot"
mkdir -p "$debroot/var/lib/dpkg/info" "$debroot/var/lib/dpkg/updates" "$debroot/var/log"
: > "$debroot/var/lib/dpkg/status"
echo "(the scratch root's dpkg database is empty: its Depends are the host's, hence --force-depends and dpkg's notes)"
PATH="$PATH:/usr/sbin:/sbin" dpkg --root="$debroot" --admindir="$debroot/var/lib/dpkg" --log="$debroot/var/log/dpkg.log" \
  --force-not-root --force-depends --force-script-chrootless -i "$work"/deb/stoa-updater_*.deb
dpkg-deb --field "$work"/deb/stoa-updater_*.deb Package Version Architecture Depends
U="$debroot/usr/bin/stoa-updater"
"$U" --version

say "sample images for the example release (an OCI layout made in code)"
scripts/make-sample-images.sh "$root/manifests/vendor/images" 2.0.0 2.1.0 2.3.0

say "release engineer: start the local mirror of the upstream registries and chart repositories"
pids=()
mirror_dir="$work/mirror"
stop_mirror() { scripts/local-mirror.sh stop "$mirror_dir" || true; }
trap stop_mirror EXIT
read -r -a MIRROR <<< "$(scripts/local-mirror.sh start "$mirror_dir")"
echo "build flags: ${MIRROR[*]}"
echo "registries.conf:"; grep -v '^#' "$mirror_dir/registries.conf" | sed '/^$/d; s/^/  /' | head -8; echo "  …"
echo "the release manifest names the upstream locations:"
grep -E '^(chart|repo|name) = "(oci|https|docker)' manifests/stoa-platform.toml | sed 's/^/  /'

say "release engineer: keygen, build the stack release through the mirror (twice: reproducible)"
"$B" keygen --out "$work/release"
export SOURCE_DATE_EPOCH=1767225600
BUILD=("$B" build --cache "$work/cache" "${MIRROR[@]}")
"${BUILD[@]}" manifests/stoa-platform.toml --key "$work/release.key" --out "$work/dist/stoa-platform-2.3.0.tar.zst"
"${BUILD[@]}" manifests/stoa-platform.toml --key "$work/release.key" --out "$work/dist/again.tar.zst" --quiet >/dev/null
cmp "$work/dist/stoa-platform-2.3.0.tar.zst" "$work/dist/again.tar.zst" && echo "byte-identical: reproducible"
rm "$work/dist/again.tar.zst"

say "release engineer: every image the charts will run (real Helm renders each chart with its vendor values), and whether the release carries it"
"$B" images manifests/stoa-platform.toml --cache "$work/cache" "${MIRROR[@]}" | tee "$work/images.txt"
grep -q '; 0 would be refused by build$' "$work/images.txt" || { echo "an image the charts run is not carried"; exit 1; }

say "release engineer: the same release without pgpool's image is refused (exit 2, naming chart, template and image)"
missing="$(mktemp -p manifests .missing-image.XXXXXX.toml)"
sed '/^\[\[images\]\]$/{N; /bitnami\/pgpool/d}' manifests/stoa-platform.toml > "$missing"
rc=0
"${BUILD[@]}" "$missing" --key "$work/release.key" --out "$work/dist/missing.tar.zst" --quiet || rc=$?
rm -f "$missing"
echo "exit code $rc"
[ "$rc" = 2 ] && [ ! -e "$work/dist/missing.tar.zst" ] || { echo "expected exit 2 and no bundle"; exit 1; }

say "anyone: inspect"
"$U" inspect "$work/dist/stoa-platform-2.3.0.tar.zst" --trust "$work/release.pub"

say "site operator: verify against the trusted key"
"$U" verify "$work/dist/stoa-platform-2.3.0.tar.zst" --trust "$work/release.pub"

say "independent readers: tar, openssl, skopeo"
mkdir -p "$work/raw"
tar --zstd -xf "$work/dist/stoa-platform-2.3.0.tar.zst" -C "$work/raw"
for sig in "$work"/raw/signatures/*.sig; do
  openssl pkeyutl -verify -pubin -inkey "$work/release.pub" -rawin -in "$work/raw/manifest.json" -sigfile "$sig"
done
skopeo inspect "oci:$work/raw/oci:registry.gostoa.dev/stoa/api:2.3.0" | head -4
skopeo inspect "oci:$work/raw/oci:docker.io/bitnami/pgpool:4.6.3-debian-12-r0" | head -4
echo "the bundle names upstream locations, never the mirror's: $(grep -c 127.0.0.1 "$work/raw/manifest.json" || true) mentions of 127.0.0.1"

say "a courier swaps a file inside and re-packs with tar: refused, naming the entry"
echo 'echo "and something extra"' >> "$work/raw/files/bin/stoactl"
tar --zstd -tf "$work/dist/stoa-platform-2.3.0.tar.zst" > "$work/order.txt"
(cd "$work/raw" && tar --zstd -cf "$work/tampered.tar.zst" --no-recursion -T "$work/order.txt")
if "$U" verify "$work/tampered.tar.zst" --trust "$work/release.pub"; then echo "tampered bundle accepted!"; exit 1; fi

say "site operator: extract verified content"
mkdir -p "$work/site"
"$U" extract "$work/dist/stoa-platform-2.3.0.tar.zst" --trust "$work/release.pub" --to "$work/site/2.3.0"
find "$work/site/2.3.0" -maxdepth 2 | sort

say "release engineer: build the earlier releases 2.0.0 and 2.1.0"
for v in 2.0.0 2.1.0; do
  "${BUILD[@]}" "manifests/stoa-platform-$v.toml" --key "$work/release.key" --out "$work/dist/stoa-platform-$v.tar.zst" --quiet
done
ls -l "$work"/dist/

say "release engineer: what changed 2.1.0 -> 2.3.0, and a delta bundle of 2.3.0 on 2.1.0"
"$B" diff "$work/dist/stoa-platform-2.1.0.tar.zst" "$work/dist/stoa-platform-2.3.0.tar.zst" --trust "$work/release.pub"
"${BUILD[@]}" manifests/stoa-platform.toml --key "$work/release.key" --out "$work/dist/stoa-platform-2.3.0-delta.tar.zst" \
  --base "$work/dist/stoa-platform-2.1.0.tar.zst" --quiet
full_size=$(stat -c %s "$work/dist/stoa-platform-2.3.0.tar.zst")
delta_size=$(stat -c %s "$work/dist/stoa-platform-2.3.0-delta.tar.zst")
echo "2.3.0 full bundle: $full_size bytes; delta on 2.1.0: $delta_size bytes"
"$U" inspect "$work/dist/stoa-platform-2.3.0-delta.tar.zst" | sed -n '/^delta on/,/^images/p'

# --- the site: a throwaway registry, PostgreSQL and a Helm stand-in ---------
say "site: start a throwaway docker-registry and PostgreSQL on 127.0.0.1"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
site="$work/site-apply"
mkdir -p "$site/registry" "$site/trust" "$site/values"
pgroot="/tmp/stoa-demo-pg-$$"
pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  stop_mirror
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -d "$pgroot/data" ]; then as_pg "$pgbin/pg_ctl" -D "$pgroot/data" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$pgroot"
}
trap cleanup EXIT
reg_port="$(free_port)"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$site/registry/data" "$reg_port" > "$site/registry/config.yml"
docker-registry serve "$site/registry/config.yml" >"$site/registry/log" 2>&1 &
pids+=($!)
mkdir -p "$pgroot"
if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$pgroot"; fi
as_pg "$pgbin/initdb" -A trust -U postgres --no-sync -D "$pgroot/data" >/dev/null
pg_port="$(free_port)"
as_pg "$pgbin/pg_ctl" -D "$pgroot/data" -l "$pgroot/pg.log" -o "-p $pg_port -k $pgroot -c listen_addresses=127.0.0.1" -w start >/dev/null
db="postgres://postgres@127.0.0.1:$pg_port"
psql -X -q "$db/postgres" -c 'CREATE DATABASE stoa'
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$reg_port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
echo "registry http://127.0.0.1:$reg_port, PostgreSQL $db/stoa"

cp "$work/release.pub" "$site/trust/"
printf 'replicas: 2\n' > "$site/values/stoa-api.yaml"
export FAKE_HELM_STATE="$site/helm"
# the API server's /version for the preflight (kubectl asks it), and a kubeconfig pointing at it
"$root/target/debug/fake-kube-api" v1.30.4 "$site/kube-api.port" "$site/kubeconfig" &
pids+=($!)
for _ in $(seq 100); do [ -s "$site/kube-api.port" ] && break; sleep 0.1; done
helm_bin="${STOA_HELM_DIR:-$root/target/helm-bin}"
{
  printf 'state_dir = "%s"\ntrust = "%s"\nkeep_releases = 3\n\n' "$site/state" "$site/trust"
  printf '[registry]\nurl = "http://127.0.0.1:%s"\nprefix = "stoa"\n\n' "$reg_port"
  printf '[databases.stoa]\nurl = "%s/stoa"\nsnapshot = true\n\n' "$db"
  printf '[helm]\nbin = "%s"\nvalues_dir = "%s"\ntimeout = "5m"\nkubeconfig = "%s"\nkubectl = "%s"\n' \
    "$root/target/debug/fake-helm" "$site/values" "$site/kubeconfig" "$helm_bin/kubectl"
} > "$site/updater.toml"
echo "site config ($site/updater.toml):"; sed 's/^/  /' "$site/updater.toml"
S=("$U" --config "$site/updater.toml")
show() {
  echo "-- schema (psql \\dt):"
  psql -X "$db/stoa" -c '\dt' 2>&1 | sed 's/^/   /'
  echo "-- registry tags (skopeo list-tags):"
  for r in stoa/api stoa/gateway stoa/portal bitnami/pgpool hashicorp/vault opensearchproject/opensearch; do
    printf '   stoa/%s: ' "$r"
    skopeo list-tags --tls-verify=false "docker://127.0.0.1:$reg_port/stoa/$r" 2>/dev/null | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["Tags"]))' || echo '(none)'
  done
  echo "-- Helm releases (stand-in):"
  for rn in postgresql-ha:stoa-data opensearch:stoa-data minio:stoa-data vault:stoa-vault stoa-api:stoa-system stoa-gateway:stoa-system; do
    r="${rn%%:*}"; ns="${rn#*:}"
    printf '   %s (%s): ' "$r" "$ns"
    "$root/target/debug/fake-helm" status "$r" -n "$ns" -o json --kubeconfig "$site/kubeconfig" 2>/dev/null \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print("revision", d["version"], d["chart"], "-", d["info"]["description"])' \
      || echo "(not installed)"
  done
}

# --- sneakernet: 2.0.0 travels as 1 MiB parts with 2 parity parts ---------
say "release engineer: 2.0.0 (with a 3 MiB payload file) built as 1 MiB parts + 2 parity parts"
big="$work/release-2.0.0-big.toml"
m="$root/manifests"
sed -e "s#\"oci:vendor/#\"oci:$m/vendor/#" -e "s#^path = \"charts#path = \"$m/charts#" \
    -e "s#^source = \"tools/#source = \"$m/tools/#" -e "s#^dir = \"migrations/#dir = \"$m/migrations/#" \
    -e "s#^values = \\[\"values/#values = [\"$m/values/#" \
    "$m/stoa-platform-2.0.0.toml" > "$big"
head -c 3145728 /dev/urandom > "$work/payload.bin"
printf '\n[[files]]\nsource = "%s"\ndest = "share/payload.bin"\n' "$work/payload.bin" >> "$big"
# replaces the plain 2.0.0 built above (--force: build never overwrites silently)
"${BUILD[@]}" "$big" --key "$work/release.key" --out "$work/dist/stoa-platform-2.0.0.tar.zst" --quiet --force
med="$work/medium"; mkdir -p "$med"
"${BUILD[@]}" "$big" --key "$work/release.key" --out "$med/stoa-platform-2.0.0.tar.zst" --split 1MiB --parity 2
ls -l "$med"
cat "$med"/stoa-platform-2.0.0.tar.zst.part[0-9]* | cmp - "$work/dist/stoa-platform-2.0.0.tar.zst" && echo "cat of the parts = the unsplit bundle, byte for byte"
say "courier: one disc scratched (part 2 damaged), one lost (part 3 deleted); verify at the desk names them"
printf 'XXXX' | dd of="$med/stoa-platform-2.0.0.tar.zst.part002" bs=1 seek=4096 conv=notrunc 2>/dev/null
rm "$med/stoa-platform-2.0.0.tar.zst.part003"
rc=0; "$U" verify "$med" --trust "$work/release.pub" || rc=$?
[ "$rc" -eq 1 ] || { echo "expected exit 1, got $rc"; exit 1; }
say "site operator: repair from parity, verify again"
"$U" repair "$med" --trust "$work/release.pub" --out "$med"
"$U" verify "$med" --trust "$work/release.pub"

say "site: plan 2.0.0 from the parts folder (changes nothing)"
"${S[@]}" plan "$med"
say "site: apply 2.0.0 straight from the parts"
"${S[@]}" apply "$med"
show

say "site: plan and apply 2.1.0 (the upgrade)"
"${S[@]}" plan "$work/dist/stoa-platform-2.1.0.tar.zst"
"${S[@]}" apply "$work/dist/stoa-platform-2.1.0.tar.zst"
show
say "site: plan --render 2.3.0: the final manifests of every chart, every image from the site registry"
# helm template of each bundled chart (real Helm, through the stand-in) with
# the site's values and the updater's post-renderer: every pod image becomes
# <site registry>/<prefix>/<path>:<tag>@<digest the bundle verified>
rendered="$work/plan-render-2.3.0.txt"
"${S[@]}" plan --render "$work/dist/stoa-platform-2.3.0.tar.zst" > "$rendered"
grep -E '^render |^  image ' "$rendered"
echo "-- an excerpt: stoa-api's Deployment after rewriting"
sed -n '/^--- manifests of stoa-system\/stoa-api after rewriting ---$/,/^--- end of stoa-api ---$/p' "$rendered" | head -40
site_reg="127.0.0.1:$reg_port/stoa/"
n_images=$(grep -cE '^[[:space:]]*(- )?image:' "$rendered" || true)
outside=$(grep -E '^[[:space:]]*(- )?image:' "$rendered" | grep -vE "image: \"?${site_reg//./\\.}[^\"]+@sha256:[0-9a-f]{64}\"?$" || true)
charts_rendered=$(grep -c '^--- manifests of ' "$rendered" || true)
if [ "$n_images" -eq 0 ] || [ "$charts_rendered" -ne "$(grep -c '^\[\[charts\]\]' manifests/stoa-platform.toml)" ] || [ -n "$outside" ] || grep -q 'NOT from the site registry' "$rendered"; then
  echo "FAILED: $charts_rendered charts rendered, $n_images image lines; not from $site_reg with a digest:"; echo "$outside"; exit 1
fi
echo "checked: all $n_images image lines of the $charts_rendered charts' manifests are $site_reg…@sha256:…"

say "site: the change report for 2.1.0 -> 2.3.0 (one HTML page, no script; chart diffs, SQL, preflight), signed by the site, opened in headless Chromium"
"$B" keygen --out "$work/site-report" >/dev/null
report="$work/change-2.3.0.html"
"${S[@]}" plan "$work/dist/stoa-platform-2.3.0.tar.zst" --report "$report" --sign-key "$work/site-report.key" | tail -1
openssl pkeyutl -verify -pubin -inkey "$work/site-report.pub" -rawin -in "$report" -sigfile "$report.sig"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$work/chromium-profile" \
  --window-size=1280,4000 --screenshot="$work/change-2.3.0.png" "file://$report" 2>/dev/null
[ -s "$work/change-2.3.0.png" ] || { echo "FAILED: no screenshot"; exit 1; }
for want in "registry.gostoa.dev/stoa/api:2.3.0" "0003_rate_limits" "stoa-api"; do
  grep -q "$want" "$report" || { echo "FAILED: the report does not name $want"; exit 1; }
done
echo "screenshot: $work/change-2.3.0.png ($(stat -c %s "$work/change-2.3.0.png") bytes); the page names the images, migrations and charts that change"

say "site: status and history"
"${S[@]}" status
"${S[@]}" history

say "site: a replayed older bundle is refused (exit 5)"
rc=0; "${S[@]}" apply "$work/dist/stoa-platform-2.0.0.tar.zst" || rc=$?
[ "$rc" -eq 5 ] || { echo "expected exit 5, got $rc"; exit 1; }
echo "(refused, exit $rc)"

say "site: roll back to 2.0.0 (down migrations, Helm back to recorded revisions; images stay)"
"${S[@]}" rollback
show
"${S[@]}" status
"${S[@]}" history

say "site: apply 2.1.0 again: its images are in the registry already, so no blob bytes are uploaded"
"${S[@]}" apply "$work/dist/stoa-platform-2.1.0.tar.zst" --json \
  | python3 -c 'import json,sys; d=json.load(sys.stdin)["apply"]; print("applied", d["version"], "- blob bytes uploaded:", d["push"]["bytes_uploaded"], "- blobs already present:", d["push"]["blobs_skipped"])'
"${S[@]}" status
show

say "site: plan and apply the 2.3.0 delta: every blob it omits must be in the site's store (re-hashed) first"
"${S[@]}" plan "$work/dist/stoa-platform-2.3.0-delta.tar.zst"
"${S[@]}" apply "$work/dist/stoa-platform-2.3.0-delta.tar.zst" --quiet
"${S[@]}" history --json | python3 -c 'import json,sys; h=json.load(sys.stdin)["history"][-1]; print("history:", h["op"], h["to"], "- a delta on", h["delta"]["base"]["name"], h["delta"]["base"]["version"])'
say "site: roll the delta back to 2.1.0, as for a full bundle"
"${S[@]}" rollback
show

# --- trust that survives years offline: a signed root, one key rotation ------
say "release engineer: root keys (kept offline) and a signed root naming today's release key"
"$B" keygen --out "$work/root-a"
openssl genpkey -algorithm ed25519 -out "$work/root-b.key"          # openssl keys work the same
openssl pkey -in "$work/root-b.key" -pubout -out "$work/root-b.pub"
"$B" root init --root-key "$work/root-a.key" --release-key "$work/release.pub" \
  --expires 2030-01-01 --out "$work/root-1.json"
say "site: move from the key folder to the signed root (same keys), then show it"
"${S[@]}" trust init "$work/root-1.json"

say "release engineer: rotate the release key once (root v2 signed by the old AND the new root key)"
"$B" keygen --out "$work/release-2"
"$B" root rotate "$work/root-1.json" --add-release-key "$work/release-2.pub" \
  --remove-release-key "$work/release.pub" --add-root-key "$work/root-b.pub" \
  --remove-root-key "$work/root-a.pub" --sign-key "$work/root-a.key" --sign-key "$work/root-b.key" \
  --out "$work/root-2.json"
"${BUILD[@]}" manifests/stoa-platform.toml --key "$work/release-2.key" --root "$work/root-2.json" \
  --out "$work/dist/stoa-platform-2.3.0-rotated.tar.zst" --quiet
tar --zstd -tf "$work/dist/stoa-platform-2.3.0-rotated.tar.zst" | grep '^anchors/'

say "site: apply 2.3.0 signed by the new key; the root it carries is checked first, then accepted"
"${S[@]}" apply "$work/dist/stoa-platform-2.3.0-rotated.tar.zst" --quiet
"${S[@]}" trust show

say "site: a bundle signed only by the removed key is refused from now on (exit 1)"
rc=0; "${S[@]}" plan "$work/dist/stoa-platform-2.3.0.tar.zst" || rc=$?
[ "$rc" -eq 1 ] || { echo "expected exit 1, got $rc"; exit 1; }
echo "(refused, exit $rc)"

say "site: the audit log"
"${S[@]}" history --audit

# --- support bundle (issue 22): a failed apply, carried back to the vendor ----
say "site: back to 2.1.0, then 2.3.0 fails at stoa-gateway and is left (--no-auto-rollback, exit 6)"
"${S[@]}" rollback --quiet
rc=0; FAKE_HELM_FAIL_RELEASE=stoa-gateway "${S[@]}" apply "$work/dist/stoa-platform-2.3.0-rotated.tar.zst" \
  --no-auto-rollback --quiet || rc=$?
[ "$rc" -eq 6 ] || { echo "expected exit 6, got $rc"; exit 1; }
say "site: support-bundle for the vendor: redacted, encrypted to the vendor's age key (no private key on site)"
age-keygen -o "$work/vendor-identity.txt" 2>/dev/null
"${S[@]}" support-bundle --recipient "$(age-keygen -y "$work/vendor-identity.txt")" --out "$work/site-support.age"
say "vendor: support open prints the failing step and its evidence"
"$B" support open "$work/site-support.age" --identity "$work/vendor-identity.txt" > "$work/support-open.txt"
sed -n '1,/^failed preflight/p' "$work/support-open.txt"
grep -q '^  step: helm:stoa-gateway$' "$work/support-open.txt"

# --- the tools travel with the release (issue 24) ----------------------------
say "release engineer: 2.3.0 carrying the site's tools: the next stoa-updater, and the Helm and kubectl it was tested with"
# The next updater: this build with its version text patched to a newer one
# of the same length (as tests/tests/self_update.rs makes it), so it is a
# real updater for this platform that reports a newer version. The carried
# Helm is this demo's Helm stand-in (there is no cluster here), the carried
# kubectl is real kubectl.
cur_v="$("$U" --version | awk '{print $2}')"
next_v="$(echo "$cur_v" | tr '0-8' '1-9')"
mkdir -p "$work/next"
python3 - "$root/target/debug/stoa-updater" "$work/next/stoa-updater" "$cur_v" "$next_v" <<'PY'
import sys
src, dst, old, new = sys.argv[1:]
b = open(src, "rb").read().replace(old.encode(), new.encode())
open(dst, "wb").write(b)
PY
chmod 0755 "$work/next/stoa-updater"
"$work/next/stoa-updater" --version
tools_rel="$work/release-2.3.0-tools.toml"
sed -e "s#\"oci:vendor/#\"oci:$m/vendor/#" -e "s#^path = \"charts#path = \"$m/charts#" \
    -e "s#^source = \"tools/#source = \"$m/tools/#" -e "s#^dir = \"migrations/#dir = \"$m/migrations/#" \
    -e "s#^values = \\[\"values/#values = [\"$m/values/#" \
    -e 's|^# \[\[signers\]\]$|[[signers]]|' -e 's|^# name = "bitnami"$|name = "bitnami"|' \
    -e "s|^# key = \"keys/upstream/bitnami.pub\"$|key = \"$mirror_dir/upstream-keys/bitnami.pub\"|" \
    -e 's|^# images = \(\[.*\]\)$|images = \1|' -e 's|^# required = true$|required = true|' \
    "$m/stoa-platform.toml" > "$tools_rel"
echo "upstream signer (the mirror signs its bitnami stand-ins in cosign's format; required):"
grep -A4 '^\[\[signers\]\]' "$tools_rel" | sed 's/^/  /'
kubectl_v="$("$helm_bin/kubectl" version --client | awk '/Client Version/ {sub("^v", "", $3); print $3}')"
printf '\n[[tools]]\nname = "%s"\nsource = "%s"\nplatform = "linux/amd64"\nversion = "%s"\n' \
  stoa-updater "$work/next/stoa-updater" "$next_v" \
  helm "$root/target/debug/fake-helm" 3.18.0 \
  kubectl "$helm_bin/kubectl" "$kubectl_v" >> "$tools_rel"
tail -15 "$tools_rel"
tools_bundle="$work/dist/stoa-platform-2.3.0-tools.tar.zst"
"${BUILD[@]}" "$tools_rel" --key "$work/release.key" --out "$tools_bundle" --quiet
"$U" inspect "$tools_bundle" | sed -n '/^tools/,/^[a-z]/p' | head -6
echo "-- upstream signatures, verified at build and again by verify:"
"$U" verify "$tools_bundle" --trust "$work/release.pub" | grep ' signed by bitnami ' | sed 's/^/   /'
[ "$("$U" verify "$tools_bundle" --trust "$work/release.pub" | grep -c ' signed by bitnami ')" -gt 0 ] \
  || { echo "FAILED: no carried bitnami signature"; exit 1; }

# --- day 0 (issue 19): a site with no registry; nodes pull by original names ---
say "day 0: a second site with NO registry: [registry] mode = \"serve\", layout = \"mirror\"; Helm and kubectl: bundled"
site0="$work/site0"; mkdir -p "$site0/trust" "$site0/values"
cp "$work/release.pub" "$site0/trust/"
psql -X -q "$db/postgres" -c 'CREATE DATABASE stoa0'
serve_port="$(free_port)"
{
  printf 'state_dir = "%s"\ntrust = "%s"\nkeep_releases = 3\n\n' "$site0/state" "$site0/trust"
  printf '[registry]\nmode = "serve"\nlayout = "mirror"\nurl = "http://127.0.0.1:%s"\nprefix = "stoa"\n\n' "$serve_port"
  printf '[serve]\nlisten = "127.0.0.1:%s"\n\n' "$serve_port"
  printf '[databases.stoa]\nurl = "%s/stoa0"\nsnapshot = true\n\n' "$db"
  printf '[helm]\nbin = "bundled"\nvalues_dir = "%s"\ntimeout = "5m"\nkubeconfig = "%s"\nkubectl = "bundled"\n' \
    "$site0/values" "$site/kubeconfig"
} > "$site0/updater.toml"
sed 's/^/  /' "$site0/updater.toml"
S0=("$U" --config "$site0/updater.toml")
# the carried stand-in renders with real Helm (it looks beside itself otherwise)
export STOA_REAL_HELM="$helm_bin/helm3"
say "day 0: plan 2.3.0: preflight names the carried Helm and kubectl it runs"
FAKE_HELM_STATE="$site0/helm" "${S0[@]}" plan "$tools_bundle" | grep -E '^  (ok|FAILED) +(helm|kubernetes) '
say "day 0: apply 2.3.0: nothing pushed, the images published into the store, the charts through the bundled Helm"
FAKE_HELM_STATE="$site0/helm" "${S0[@]}" apply "$tools_bundle" --quiet
FAKE_HELM_STATE="$site0/helm" "${S0[@]}" status
ls -l "$site0"/state/tools/*/
say "day 0: stoa-updater serve answers as a registry; mirror-config writes the nodes' containerd hosts.toml"
"${S0[@]}" -v serve --listen "127.0.0.1:$serve_port" > "$site0/serve.out" 2> "$site0/serve.log" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$serve_port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
"${S0[@]}" mirror-config --for containerd --out "$site0/certs.d"
for f in "$site0"/certs.d/*/hosts.toml; do echo "-- $f"; sed 's/^/   /' "$f"; done
say "day 0: a node's containerd (real, private socket) pulls the 2.3.0 stack by its ORIGINAL names through the mirror"
ctd="$site0/containerd"; mkdir -p "$ctd"
printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s/c.sock"\n[ttrpc]\n  address = "%s/t.sock"\n' \
  "$ctd" "$ctd" "$ctd" "$ctd" > "$ctd/config.toml"
containerd --config "$ctd/config.toml" > "$ctd/log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -S "$ctd/c.sock" ] && break; sleep 0.1; done
mapfile -t stack_images < <("$U" inspect "$tools_bundle" --trust "$work/release.pub" --json \
  | python3 -c 'import json,sys; [print(i["name"]) for i in json.load(sys.stdin)["images"]]')
for img in "${stack_images[@]}"; do
  ctr --address "$ctd/c.sock" images pull --snapshotter native --hosts-dir "$site0/certs.d" "$img" > "$ctd/pull.log" 2>&1 \
    || { echo "FAILED: containerd could not pull $img"; cat "$ctd/pull.log"; exit 1; }
done
ctr --address "$ctd/c.sock" images ls | awk '{print "   " $1 "  " $3}'
n_pulled=$(ctr --address "$ctd/c.sock" images ls -q | wc -l)
n_served=$(grep -c '/manifests/' "$site0/serve.log" || true)
[ "$n_pulled" -eq "${#stack_images[@]}" ] && [ "$n_served" -gt 0 ] \
  || { echo "FAILED: $n_pulled of ${#stack_images[@]} images pulled, $n_served manifests served"; exit 1; }
echo "checked: containerd holds all $n_pulled images under their own names; serve answered $n_served manifest requests (nothing mutated, nothing pushed)"

say "day 0: a node-side check of an upstream signature: the .sig beside the image, served by serve, verified with openssl and bitnami's key"
read -r sig_img sig_digest < <("$U" inspect "$tools_bundle" --trust "$work/release.pub" --json \
  | python3 -c 'import json,sys; i=[i for i in json.load(sys.stdin)["images"] if i["name"].startswith("docker.io/bitnami/")][0]; print(i["name"], i["digest"])')
sig_repo="${sig_img%:*}"; sig_repo="${sig_repo%@*}"
sig_tag="sha256-${sig_digest#sha256:}.sig"
rm -rf "$site0/sig"
skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$serve_port/stoa/$sig_repo:$sig_tag" "oci:$site0/sig:sig"
payload="$(python3 - "$site0/sig" "$sig_digest" <<'PY'
import json, sys, base64, os
d, want = sys.argv[1], sys.argv[2]
blob = lambda x: os.path.join(d, "blobs/sha256", x.split(":")[1])
m = json.load(open(blob(json.load(open(d + "/index.json"))["manifests"][0]["digest"])))
layer = m["layers"][0]
open(d + "/sig.der", "wb").write(base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"]))
p = json.load(open(blob(layer["digest"])))
assert p["critical"]["image"]["docker-manifest-digest"] == want, p
print(blob(layer["digest"]))
PY
)"
openssl dgst -sha256 -verify "$mirror_dir/upstream-keys/bitnami.pub" -signature "$site0/sig/sig.der" "$payload"
echo "checked: $sig_img's signature ($sig_tag) from serve names $sig_digest and verifies with bitnami's key"

say "site operator: self-update from the 2.3.0 bundle (verified, smoke-tested, swapped), then --revert"
"${S0[@]}" self-update "$tools_bundle"
got="$("$U" --version | awk '{print $2}')"
[ "$got" = "$next_v" ] || { echo "FAILED: after self-update the updater reports $got, not $next_v"; exit 1; }
echo "the installed updater now reports $got"
"${S0[@]}" self-update --revert
got="$("$U" --version | awk '{print $2}')"
[ "$got" = "$cur_v" ] || { echo "FAILED: after --revert the updater reports $got, not $cur_v"; exit 1; }
echo "reverted: the installed updater reports $got again"

say "done: $work"
