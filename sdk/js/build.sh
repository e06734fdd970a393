#!/usr/bin/env bash
# Build a JavaScript plugin into a component journeyd accepts:
#   sdk/js/build.sh DIR OUT.wasm [step-plugin|channel-plugin]
# DIR holds `index.js` (the component's exports, e.g.
# `export const step = exportStep(greet)`) and the modules it imports by
# relative path; the SDK's files (journey-sdk.js, journey-host.js,
# journey-channel.js) are put beside them. Uses componentize-js from sdk/js/node_modules
# (scripts/toolchains.sh installs it), or COMPONENTIZE_JS.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 DIR OUT.wasm [step-plugin|channel-plugin]" >&2
    exit 2
fi
sdk=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$sdk/../.." && pwd)
componentize=${COMPONENTIZE_JS:-$sdk/node_modules/.bin/componentize-js}
if [ ! -x "$componentize" ]; then
    echo "componentize-js is not installed: run 'source scripts/setup.sh' (or set COMPONENTIZE_JS)" >&2
    exit 1
fi
out=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
# componentize-js reads modules only inside the folder it builds in, so
# the plugin and the SDK are copied into one (symbolic links resolved).
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp -RL "$1"/. "$staging"/
cp "$sdk"/journey-sdk.js "$sdk"/journey-host.js "$sdk"/journey-channel.js "$staging"/
cd "$staging"
"$componentize" index.js --wit "${JOURNEY_WIT:-$root/wit}" -n "${3:-step-plugin}" -o "$out"
