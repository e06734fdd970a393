#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds once, runs every test.
#   tests/run.sh
# Builds the runtime and the tests in one profile (release) so wasmtime is
# compiled once, builds every plugin and fixture component once, then runs
# the unit tests beside the code and the black-box tests in tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/browser.sh
source scripts/postgres.sh

step "lint: cargo fmt --check"
cargo fmt --all -- --check

# Clippy lints the workspace's own crates as they compile: clippy-driver
# wraps rustc for them (as `cargo clippy` does), and any warning, rustc's
# or clippy's, fails the build. That is `cargo clippy --all-targets -- -D
# warnings` without a second, check-only compile of every dependency.
# Exported, so `cargo test` below finds everything built.
export RUSTC_WORKSPACE_WRAPPER=clippy-driver
export RUSTFLAGS="${RUSTFLAGS:-} -D warnings"
# A whole run builds once: incremental caches would make the workspace's
# crates about a sixth slower to compile from scratch (measured on the
# runtime library: 162 s against 135 s) and are not reused here.
export CARGO_INCREMENTAL=0

step "build and lint: journeyd and the test binaries (release), clippy -D warnings"
cargo build --release --workspace --all-targets --locked

step "test: unit tests and black-box tests against a real journeyd"
cargo test --release --workspace --locked -- --test-threads 2

step "test: the Python SDK, natively (sdk/python/tests)"
python3 -m unittest discover -s sdk/python/tests
python3 -m unittest discover -s plugins/next-best-channel

step "test: the JavaScript SDK, natively (node --test)"
node --test tests/fixtures/js/ plugins/team-chat plugins/acknowledge-js
