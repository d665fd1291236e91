#!/usr/bin/env bash
# The main job, end to end: make a signing key, build the example release,
# inspect it, verify it as a site would, check it with tar/openssl/skopeo as
# independent readers, and extract its verified content.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="${DEMO_DIR:-$root/work/demo}"
rm -rf "$work"; mkdir -p "$work"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "build the two programs"
cargo build -q --workspace --bins
B="$root/target/debug/stoa-bundler"
U="$root/target/debug/stoa-updater"

say "sample images for the example release (an OCI layout made in code)"
scripts/make-sample-images.sh "$root/manifests/vendor/images" 2.0.0 2.1.0 2.3.0

say "release engineer: keygen, build (twice: reproducible)"
"$B" keygen --out "$work/release"
export SOURCE_DATE_EPOCH=1767225600
"$B" build manifests/stoa-platform.toml --key "$work/release.key" --out "$work/dist/stoa-platform-2.3.0.tar.zst"
"$B" build manifests/stoa-platform.toml --key "$work/release.key" --out "$work/dist/again.tar.zst" --quiet >/dev/null
cmp "$work/dist/stoa-platform-2.3.0.tar.zst" "$work/dist/again.tar.zst" && echo "byte-identical: reproducible"
rm "$work/dist/again.tar.zst"

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

say "a courier swaps a file inside and re-packs with tar: refused, naming the entry"
echo 'echo "and something extra"' >> "$work/raw/files/bin/stoactl"
tar --zstd -tf "$work/dist/stoa-platform-2.3.0.tar.zst" > "$work/order.txt"
(cd "$work/raw" && tar --zstd -cf "$work/tampered.tar.zst" --no-recursion -T "$work/order.txt")
if "$U" verify "$work/tampered.tar.zst" --trust "$work/release.pub"; then echo "tampered bundle accepted!"; exit 1; fi

say "site operator: extract verified content"
"$U" extract "$work/dist/stoa-platform-2.3.0.tar.zst" --trust "$work/release.pub" --to "$work/site/2.3.0"
find "$work/site/2.3.0" -maxdepth 2 | sort

say "done: $work"
