#!/usr/bin/env bash
# Fuzzes the format's parsers: `scripts/fuzz.sh [seconds-per-target]`
# (default 60). Targets (fuzz/, its own workspace): manifest, tar,
# zstd_frames (a whole bundle file), root (trust roots). Seed corpora are
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
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

cargo build -q --workspace --bins
B="$root/target/debug/stoa-bundler"
work="$root/target/fuzz-seeds"
rm -rf "$work"; mkdir -p "$work/src"
"$B" keygen --out "$work/release" >/dev/null
"$B" keygen --out "$work/root-key" >/dev/null
"$B" root init --root-key "$work/root-key.key" --release-key "$work/release.pub" \
  --expires 2099-01-01 --out "$work/root.json" >/dev/null
printf 'echo hello\n' > "$work/src/tool"
printf 'CREATE TABLE t (id int);\n' > "$work/src/0001_init.sql"
mkdir -p "$work/src/migrations"; mv "$work/src/0001_init.sql" "$work/src/migrations/"
for v in 1.0.0 1.1.0; do
  printf '[release]\nname = "stoa-platform"\nversion = "%s"\n\n[[migrations]]\ndatabase = "stoa"\ndir = "migrations"\n\n[[files]]\nsource = "tool"\ndest = "bin/tool"\nmode = "0755"\n' "$v" > "$work/src/release-$v.toml"
done
"$B" build "$work/src/release-1.0.0.toml" --key "$work/release.key" --out "$work/a.tar.zst" --quiet >/dev/null
"$B" build "$work/src/release-1.1.0.toml" --key "$work/release.key" --root "$work/root.json" \
  --out "$work/b.tar.zst" --quiet >/dev/null
"$root/target/debug/stoa-fixtures" fuzz-seeds "$work/seeds" "$work/a.tar.zst" "$work/b.tar.zst" \
  "$work/release.key" "$work/root.json" "$work/root-key.key" "$work/release.pub"

cd fuzz
for t in manifest tar zstd_frames root; do
  echo "fuzz.sh: $t for ${secs}s ($(ls "$work/seeds/$t" | wc -l) seeds)"
  mkdir -p "corpus/$t"
  cargo fuzz run "$t" "corpus/$t" "$work/seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1
done
echo "fuzz.sh: every target ran ${secs}s without a crash"
