#!/usr/bin/env bash
# Build the component: ./build.sh → {{name}}.wasm
# Needs componentize-py 0.25.1 (pip install componentize-py==0.25.1, or
# set COMPONENTIZE_PY); the SDK (journey_sdk/) and the contract (wit/) are
# in this folder.
set -euo pipefail
cd "$(dirname "$0")"
"${COMPONENTIZE_PY:-componentize-py}" -d wit -w channel-plugin componentize -p . app -o {{name}}.wasm
echo "built {{name}}.wasm"
