# Build the Python and JavaScript components beside the Rust ones, each
# only when its sources (or the WIT contract) changed since its last build:
#   plugins/NAME/app.py                  → plugin_NAME.wasm (`-` as `_`)
#   plugins/NAME/index.js                → plugin_NAME.wasm (`-` as `_`)
#   tests/fixtures/python/NAME/app.py    → fixture_py_NAME.wasm
#   tests/fixtures/js/NAME/index.js      → fixture_js_NAME.wasm
#   tests/fixtures/js/noop/index.js      → fixture_qjs_noop.wasm too (QuickJS, for the benchmark)
# against wit/ and the step-plugin world, or the fixture's own `wit/`
# and the world named in its `world` file.
# into target/wasm32-wasip2/plugin. Sourced (by scripts/setup.sh) after
# scripts/toolchains.sh.

components_out=target/wasm32-wasip2/plugin
mkdir -p "$components_out"

# Whether $1 is missing or older than any file under the other arguments.
stale() {
    local out=$1
    shift
    [ ! -e "$out" ] || [ -n "$(find "$@" -newer "$out" -type f -not -path '*/__pycache__/*' -print -quit)" ]
}

# Each build is one process on one core: run as many at once as there are
# cores, and fail when any of them fails.
component_builds=()
in_background() {
    while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do
        wait -n || true
    done
    "$@" &
    component_builds+=($!)
}

step "build: Python and JavaScript components ($components_out/*_py_*.wasm, *_js_*.wasm)"
for dir in plugins/*/; do
    [ -f "$dir/app.py" ] || continue
    name=$(basename "$dir" | tr - _)
    out="$components_out/plugin_$name.wasm"
    if stale "$out" "$dir" wit sdk/python/journey_sdk; then
        echo "componentize-py: $dir → $out"
        in_background sdk/python/build.sh "$dir" "$out" >/dev/null
    fi
done
for dir in plugins/*/; do
    [ -f "$dir/index.js" ] || continue
    name=$(basename "$dir" | tr - _)
    out="$components_out/plugin_$name.wasm"
    world=step-plugin
    [ -f "$dir/world" ] && world=$(cat "$dir/world")
    if stale "$out" "$dir" wit sdk/js/journey-sdk.js sdk/js/journey-host.js sdk/js/journey-channel.js; then
        echo "componentize-js: $dir → $out"
        in_background sdk/js/build.sh "$dir" "$out" "$world" >/dev/null
    fi
done
for dir in tests/fixtures/python/*/; do
    name=$(basename "$dir")
    out="$components_out/fixture_py_$name.wasm"
    wit=wit world=step-plugin
    [ -d "$dir/wit" ] && wit="$dir/wit"
    [ -f "$dir/world" ] && world=$(cat "$dir/world")
    if stale "$out" "$dir" "$wit" wit sdk/python/journey_sdk; then
        echo "componentize-py: $dir → $out"
        in_background env JOURNEY_WIT="$wit" sdk/python/build.sh "$dir" "$out" "$world" >/dev/null
    fi
done
for dir in tests/fixtures/js/*/; do
    name=$(basename "$dir")
    out="$components_out/fixture_js_$name.wasm"
    if stale "$out" "$dir" wit sdk/js/journey-sdk.js sdk/js/journey-host.js; then
        echo "componentize-js: $dir → $out"
        in_background sdk/js/build.sh "$dir" "$out" >/dev/null
    fi
done
out="$components_out/fixture_qjs_noop.wasm"
if stale "$out" tests/fixtures/js/noop wit; then
    echo "componentize-qjs --sync: tests/fixtures/js/noop/ → $out"
    in_background "$(dirname "$COMPONENTIZE_JS")/componentize-qjs" --sync -w wit -n step-plugin \
        -j tests/fixtures/js/noop/index.js -o "$out" >/dev/null
fi
for build in "${component_builds[@]}"; do
    wait "$build" || { echo "a component build failed (see above)" >&2; false; }
done
