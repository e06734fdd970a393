#!/usr/bin/env bash
# Build a Python plugin into a component journeyd accepts:
#   sdk/python/build.sh DIR OUT.wasm [step-plugin|channel-plugin]
# DIR holds `app.py` (the module componentize-py builds: it assigns the
# export, e.g. `Step = export_step(run)`) and any modules it imports; the
# SDK (`journey_sdk`) and the bindings generated from wit/ are added.
# Uses componentize-py from .toolchains/python (scripts/toolchains.sh
# installs it), or COMPONENTIZE_PY.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 DIR OUT.wasm [step-plugin|channel-plugin]" >&2
    exit 2
fi
sdk=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$sdk/../.." && pwd)
componentize=${COMPONENTIZE_PY:-$root/.toolchains/python/bin/componentize-py}
if [ ! -x "$componentize" ]; then
    echo "componentize-py is not installed: run 'source scripts/setup.sh' (or set COMPONENTIZE_PY)" >&2
    exit 1
fi
exec "$componentize" -d "${JOURNEY_WIT:-$root/wit}" -w "${3:-step-plugin}" componentize \
    -p "$1" -p "$sdk" app -o "$2"
