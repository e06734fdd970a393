#!/usr/bin/env bash
# The main job: build everything, start journeyd on a temporary data
# directory, deploy the enquiry journey and send it a handful of enquiries,
# printing each instance's timeline as it completes.
#   examples/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

step "build: journeyd (release)"
cargo build --locked --release -p journey-runtime

journeyd=target/release/journeyd
plugins=target/wasm32-wasip2/plugin
data=$(mktemp -d)
log="$data/journeyd.log"
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT

step "start: journeyd serve --data $data"
"$journeyd" serve --data "$data/store" --listen 127.0.0.1:0 >"$data/stdout" 2>"$log" &
server=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$data/stdout" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
export JOURNEYD_URL=$(sed -n 's/^journeyd listening on //p' "$data/stdout")
echo "journeyd is at $JOURNEYD_URL (log: $log)"

step "push: the enquiry plugins"
for plugin in acknowledge classify handover resolve; do
    "$journeyd" plugin push "$plugin" "$plugins/plugin_$plugin.wasm"
done

step "customers: examples/enquiry/customers.json"
"$journeyd" customer import examples/enquiry/customers.json

step "deploy: examples/enquiry/journey.toml"
"$journeyd" journey deploy examples/enquiry/journey.toml

step "send: examples/enquiry/enquiries.json (each timeline printed as it completes)"
"$journeyd" event send --file examples/enquiry/enquiries.json --wait

step "outbox: what the journeys queued for delivery"
"$journeyd" outbox --limit 20
