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
scripts/install-deps.sh

# --- lints ------------------------------------------------------------------
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# --- tests --------------------------------------------------------------------
cargo build --workspace --bins --locked
cargo test --workspace --locked

# --- fuzzing: every cargo-fuzz target for a bounded time; a crash fails -------
scripts/fuzz.sh "${STOA_FUZZ_SECONDS:-45}"
