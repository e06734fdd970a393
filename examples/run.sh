#!/usr/bin/env bash
# The main job: build everything, start journeyd on a temporary data
# directory and a simulated clock (1 December 2026, 08:00 UTC) and a local
# provider sink that speaks the shipped channel plugins' APIs, point the
# integrations at it, deploy the enquiry and webinar journeys, replay two
# weeks of customer events in a few seconds, then print the enquiry
# timelines, both drop-off reports and what arrived at the provider.
#   examples/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

step "build: journeyd and the provider sink (release)"
cargo build --locked --release -p journey-runtime -p journey-provider-sink

journeyd=target/release/journeyd
plugins=target/wasm32-wasip2/plugin
data=$(mktemp -d)
log="$data/journeyd.log"
sink=""
trap 'kill "$server" $sink 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT

# Development credentials: journeyd reads them from its environment (the
# integrations name them, they are never stored), the sink checks them.
export SENDGRID_API_KEY=SG.dev-key TWILIO_ACCOUNT_SID=AC0000dev TWILIO_AUTH_TOKEN=dev-token \
    SLACK_WEBHOOK_PATH=T000/B000/dev CHAT_WEBHOOK_SECRET=whsec_ZGV2LWNoYXQtd2ViaG9vay1zZWNyZXQ= \
    CALLBACK_SECRET=whsec_ZGV2LWNhbGxiYWNrLXNlY3JldA==

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
# The first start made an admin token; every client command sends it.
export JOURNEYD_TOKEN=$(cat "$data/store/admin.token")
echo "journeyd is at $JOURNEYD_URL (log: $log)"
"$journeyd" clock show

step "start: provider-sink, a local provider for email (SendGrid-shaped), SMS (Twilio-shaped), team (Slack-shaped) and chat (signed webhooks)"
target/release/provider-sink --listen 127.0.0.1:0 \
    --sendgrid-key "$SENDGRID_API_KEY" --twilio-sid "$TWILIO_ACCOUNT_SID" --twilio-token "$TWILIO_AUTH_TOKEN" \
    --slack-path "$SLACK_WEBHOOK_PATH" --webhook-secret "$CHAT_WEBHOOK_SECRET" \
    --callback "sendgrid=$JOURNEYD_URL/v1/callbacks/email" --callback "twilio=$JOURNEYD_URL/v1/callbacks/sms" \
    --callback "webhook=$JOURNEYD_URL/v1/callbacks/chat" --callback-secret "$CALLBACK_SECRET" \
    >"$data/sink.stdout" 2>"$data/sink.log" &
sink=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$data/sink.stdout" 2>/dev/null && break
    kill -0 "$sink" 2>/dev/null || { cat "$data/sink.log"; exit 1; }
    sleep 0.1
done
sink_url=$(sed -n 's/^provider-sink listening on //p' "$data/sink.stdout")
sink_host=${sink_url#http://}
echo "provider-sink is at $sink_url"

step "push: the enquiry and webinar step plugins (Rust, and the webinar's model in Python), and the channel plugins (Rust, and team-chat in JavaScript)"
for plugin in acknowledge classify handover sla escalate resolve send await sleep next_best_channel \
    sendgrid twilio team_chat webhook; do
    "$journeyd" plugin push "${plugin//_/-}" "$plugins/plugin_$plugin.wasm"
done

step "hot-swap: acknowledge in JavaScript (plugins/acknowledge-js) becomes the latest acknowledge; enquiries run it from now on"
"$journeyd" plugin push acknowledge "$plugins/plugin_acknowledge_js.wasm"

step "integrations: each channel's plugin, the host it may reach and the secrets it may use"
"$journeyd" integration set email --plugin sendgrid --host "$sink_host" \
    --secret api_key=env:SENDGRID_API_KEY --secret callbacks=env:CALLBACK_SECRET --callback-secret callbacks \
    --config "{\"url\": \"$sink_url/v3/mail/send\", \"from\": \"journeys@example.com\", \"from_name\": \"Example\"}"
"$journeyd" integration set sms --plugin twilio --host "$sink_host" \
    --secret account_sid=env:TWILIO_ACCOUNT_SID --secret auth_token=env:TWILIO_AUTH_TOKEN \
    --secret callbacks=env:CALLBACK_SECRET --callback-secret callbacks \
    --config "{\"base_url\": \"$sink_url\", \"from\": \"+15005550006\"}"
"$journeyd" integration set team --plugin team-chat --host "$sink_host" --secret webhook_path=env:SLACK_WEBHOOK_PATH \
    --config "{\"url\": \"$sink_url/services/{{secret:webhook_path}}\"}"
"$journeyd" integration set chat --plugin webhook --host "$sink_host" \
    --secret signing_key=env:CHAT_WEBHOOK_SECRET --secret callbacks=env:CALLBACK_SECRET --callback-secret callbacks \
    --config "{\"url\": \"$sink_url/webhooks/chat\"}"

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

step "timeline: Grace's webinar, where the next-best-channel model (Python) chose SMS"
grace=$("$journeyd" instance list --journey webinar | awk '/c-grace/ {print $1; exit}')
"$journeyd" instance show "$grace"

step "funnel: where webinar invitees dropped off, per subject line"
"$journeyd" journey funnel webinar

step "funnel: the enquiry journey"
"$journeyd" journey funnel enquiry

step "deliveries: wait until nothing is left to send"
for _ in $(seq 1 300); do
    pending=$("$journeyd" delivery list --status queued,sending,retrying --limit 1000 | grep -c '^i-' || true)
    [ "$pending" = 0 ] && break
    sleep 0.1
done
"$journeyd" outbox --limit 15

step "provider-sink: what left journeyd over HTTP and arrived at the provider"
target/release/provider-sink list "$sink_url" --per-provider 3

step "deliveries that did not reach the customer (bounced, failed, dead)"
"$journeyd" delivery list
