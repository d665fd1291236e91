#!/usr/bin/env bash
# The test command (README): installs what a fresh machine lacks, then runs
# formatting, lints, and every test, including the end-to-end tests that
# start a real docker-registry and PostgreSQL on loopback. Nothing skips:
# a missing service is a failure. Ends with scripts/fuzz.sh (45 s per target,
# STOA_FUZZ_SECONDS to change; installs cargo-fuzz when missing).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# --- what the tests drive: independent checkers and real services ----------
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have skopeo          || need+=(skopeo)
have docker-registry || need+=(docker-registry)
have htpasswd        || need+=(apache2-utils)
have openssl         || need+=(openssl)
have jq              || need+=(jq)        # reads a trust root's signed string (trust.rs)
have zstd            || need+=(zstd)
have psql            || need+=(postgresql-client)
have pg_dump         || need+=(postgresql-client)
have curl            || need+=(curl)
have python3         || need+=(python3)   # serves a Helm chart repository in the registry tests
have runuser         || need+=(util-linux)
have flock           || need+=(util-linux)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
tar --version 2>/dev/null | grep -q 'GNU tar' || need+=(tar)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's postgresql package may start a cluster of its own; the tests start
# their own throwaway clusters and do not need it.

# --- lints ------------------------------------------------------------------
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# --- tests --------------------------------------------------------------------
cargo build --workspace --bins --locked
cargo test --workspace --locked

# --- fuzzing: every cargo-fuzz target for a bounded time; a crash fails -------
scripts/fuzz.sh "${STOA_FUZZ_SECONDS:-45}"
