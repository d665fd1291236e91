#!/usr/bin/env bash
# Fuzzes the format's parsers: `scripts/fuzz.sh [seconds-per-target]`
# (default 60). Targets (fuzz/, its own workspace): manifest, tar,
# zstd_frames (a whole bundle file), root (trust roots), signature (cosign
# .sig manifests and payloads), podimages (rendered
# manifests; seeded from podimages/tests/fixtures). Seed corpora are
# made fresh from the named fixtures (tests/src/tamper.rs,
# tests/src/root_fixture.rs) by `stoa-fixtures fuzz-seeds`; nothing binary
# is committed. Installs cargo-fuzz when missing. Runs on the stable
# toolchain through RUSTC_BOOTSTRAP=1 (nightly may not be downloadable).
# Any crash fails the script (non-zero exit); its input is kept in
# fuzz/artifacts/<target>/ — fix it and add it as a regression test.
set -euo pipefail
secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

cargo build -q --workspace --bins
B="$root/target/debug/stoa-bundler"
# build renders each chart with real Helm to check every image is carried
# (scripts/install-deps.sh puts Helm in target/helm-bin)
export STOA_HELM="${STOA_HELM:-$root/target/helm-bin/helm3}"
work="$root/target/fuzz-seeds"
rm -rf "$work"; mkdir -p "$work"
"$B" keygen --out "$work/release" >/dev/null
"$B" keygen --out "$work/root-key" >/dev/null
"$B" root init --root-key "$work/root-key.key" --release-key "$work/release.pub" \
  --expires 2099-01-01 --out "$work/root.json" >/dev/null
# the STOA-only releases the site tests use (tests/fixtures/stoa-only: the
# example release without the upstream stack, so small seeds and no local
# mirror; the same bundles the named fixtures are cut from), paths made absolute
scripts/make-sample-images.sh "$root/manifests/vendor/images" 2.1.0 2.3.0 >/dev/null
m="$root/manifests"
for v in 2.3.0 2.1.0; do
  f="$root/tests/fixtures/stoa-only/stoa-platform-$v.toml"; [ "$v" = 2.3.0 ] && f="$root/tests/fixtures/stoa-only/stoa-platform.toml"
  sed -e "s#\"oci:vendor/#\"oci:$m/vendor/#" -e "s#^path = \"charts#path = \"$m/charts#" \
      -e "s#^source = \"tools/#source = \"$m/tools/#" -e "s#^dir = \"migrations/#dir = \"$m/migrations/#" \
      "$f" > "$work/release-$v.toml"
done
"$B" build "$work/release-2.3.0.toml" --key "$work/release.key" --out "$work/a.tar.zst" --quiet >/dev/null
"$B" build "$work/release-2.1.0.toml" --key "$work/release.key" --root "$work/root.json" \
  --out "$work/b.tar.zst" --quiet >/dev/null
"$root/target/debug/stoa-fixtures" fuzz-seeds "$work/seeds" "$work/a.tar.zst" "$work/b.tar.zst" \
  "$work/release.key" "$work/root.json" "$work/root-key.key" "$work/release.pub"

mkdir -p "$work/seeds/podimages"
find "$root/podimages/tests/fixtures" -name '*.yaml' | while read -r f; do
  cp "$f" "$work/seeds/podimages/$(basename "$(dirname "$f")")-$(basename "$f")"
done

# cosign-format seeds for the signature target: a .sig manifest and a payload
mkdir -p "$work/seeds/signature"
d0="sha256:$(printf x | sha256sum | cut -d' ' -f1)"
printf '{"critical":{"identity":{"docker-reference":"docker.io/bitnami/redis"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' \
  "$d0" > "$work/seeds/signature/payload.json"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":1},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"%s","size":1,"annotations":{"dev.cosignproject.cosign/signature":"MEUCIQ=="}}]}' \
  "$d0" "$d0" > "$work/seeds/signature/sig-manifest.json"

# only the fuzz build sees RUSTC_BOOTSTRAP (it is part of cargo's
# fingerprint: set for the main build it would rebuild target/ twice)
export RUSTC_BOOTSTRAP=1
cd fuzz
for t in manifest tar zstd_frames root signature podimages; do
  echo "fuzz.sh: $t for ${secs}s ($(ls "$work/seeds/$t" | wc -l) seeds)"
  mkdir -p "corpus/$t"
  cargo fuzz run "$t" "corpus/$t" "$work/seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1
done
echo "fuzz.sh: every target ran ${secs}s without a crash"
