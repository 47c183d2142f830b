#!/usr/bin/env bash
# Builds the Debian package of ikehub:  bash packaging/build-deb.sh [OUTPUT_DIR]
#
# Reuses the release binary (`cargo build --release` first if it is missing), writes the man
# pages (`ikehub man`) and the bash, zsh and fish completions (`ikehub completions SHELL`) into
# TARGET/release/deb-assets, where the assets of [package.metadata.deb] in Cargo.toml find
# them, then runs `cargo deb --no-build`. Needs cargo-deb (`cargo install cargo-deb --locked`)
# and dpkg-dev. Prints the path of the .deb on the last line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=${1:-}
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$TARGET_DIR" ] || TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
BIN="$TARGET_DIR/release/ikehub"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 1
fi
[ -x "$BIN" ] || cargo build --release

ASSETS="$TARGET_DIR/release/deb-assets"
rm -rf "$ASSETS"
mkdir -p "$ASSETS/completions"
"$BIN" man --out "$ASSETS/man" >/dev/null
"$BIN" completions bash >"$ASSETS/completions/ikehub.bash"
"$BIN" completions zsh >"$ASSETS/completions/_ikehub"
"$BIN" completions fish >"$ASSETS/completions/ikehub.fish"

# Stripped: the release profile keeps line tables for the test suite's backtraces, the package
# need not (53 MB installed with them, 6 MB without; the .deb is 1.9 MB).
args=(--no-build --strip)
[ -n "$OUT" ] && args+=(--output "$OUT")
cargo deb "${args[@]}"
