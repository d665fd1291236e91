#!/usr/bin/env bash
# Writes the example release's sample images (an OCI image layout) into
# manifests/vendor/images. Deterministic: same versions, same bytes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/manifests/vendor/images}"
shift || true
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(2.0.0 2.1.0 2.3.0)
cargo build -q --manifest-path "$root/Cargo.toml" -p stoa-e2e --bin stoa-fixtures
"$root/target/debug/stoa-fixtures" sample-images "$out" "${versions[@]}"
echo "sample images for ${versions[*]} in $out"
