#!/usr/bin/env bash
# Builds the nlb .deb with cargo-deb: the binary, the systemd unit, an example
# configuration, man pages and shell completions generated from the CLI definition.
#   cargo install cargo-deb && packaging/build-deb.sh      # -> target/debian/nlb_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p nlb
out=target/packaging
rm -rf "$out"; mkdir -p "$out/man" "$out/completions"
target/release/nlb man --out-dir "$out/man"
target/release/nlb completions bash > "$out/completions/nlb"
target/release/nlb completions zsh > "$out/completions/_nlb"
target/release/nlb completions fish > "$out/completions/nlb.fish"
cargo deb --no-build --locked -p nlb
ls target/debian/*.deb
