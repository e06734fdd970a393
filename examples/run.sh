#!/usr/bin/env bash
# The main job: build everything, start journeyd on a temporary data
# directory and a simulated clock (1 December 2026, 08:00 UTC), deploy the
# enquiry and webinar journeys, replay two weeks of customer events in a few
# seconds, then print the enquiry timelines and both drop-off reports.
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

start_ms=1796112000000 # 2026-12-01T08:00:00Z
step "start: journeyd serve --simulated-clock (1 Dec 2026, 08:00 UTC) --data $data"
"$journeyd" serve --data "$data/store" --listen 127.0.0.1:0 \
    --simulated-clock --simulated-clock-start "$start_ms" >"$data/stdout" 2>"$log" &
server=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$data/stdout" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
export JOURNEYD_URL=$(sed -n 's/^journeyd listening on //p' "$data/stdout")
echo "journeyd is at $JOURNEYD_URL (log: $log)"
"$journeyd" clock show

step "push: the enquiry and webinar plugins"
for plugin in acknowledge classify handover sla escalate resolve send await sleep fallback; do
    "$journeyd" plugin push "$plugin" "$plugins/plugin_$plugin.wasm"
done

step "caps: webinar mail is capped per customer (service messages such as enquiry replies are not)"
"$journeyd" caps set email=3/1d@webinar sms=2/7d@webinar

step "customers: examples/enquiry/customers.json, then examples/webinar/customers.json"
"$journeyd" customer import examples/enquiry/customers.json
"$journeyd" customer import examples/webinar/customers.json

step "deploy: examples/enquiry/journey.toml and examples/webinar/journey.toml"
"$journeyd" journey deploy examples/enquiry/journey.toml
"$journeyd" journey deploy examples/webinar/journey.toml

step "replay: two weeks of events (examples/*/timeline.json) on the simulated clock"
"$journeyd" event replay examples/enquiry/timeline.json examples/webinar/timeline.json
"$journeyd" clock show

step "timelines: every enquiry, from arrival to resolution (or escalation, or withdrawal)"
"$journeyd" instance list --journey enquiry --timelines

step "funnel: where webinar invitees dropped off, per subject line"
"$journeyd" journey funnel webinar

step "funnel: the enquiry journey"
"$journeyd" journey funnel enquiry

step "outbox: the first 15 messages the journeys queued for delivery"
"$journeyd" outbox --limit 15
