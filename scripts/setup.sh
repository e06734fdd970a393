# Shared by examples/run.sh and tests/run.sh: install the wasm target and
# build every plugin component (first-party plugins and test fixtures) once.
# Sourced, not run.

# Bold headings for a person at a terminal; plain text in a log file.
if [ -t 1 ]; then
    step() { printf '\n\033[1m==> %s\033[0m (%s s in)\n' "$*" "$SECONDS"; }
else
    step() { printf '\n==> %s (%s s in)\n' "$*" "$SECONDS"; }
fi

step "setup: rust target wasm32-wasip2"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

step "build: plugin components (target/wasm32-wasip2/plugin/*.wasm)"
cargo build --locked --profile plugin --target wasm32-wasip2 --workspace \
    --exclude journey-runtime --exclude journey-tests --exclude journey-provider-sink

source scripts/toolchains.sh
source scripts/build-components.sh
