// Channel `team-chat` (JavaScript): the enquiry's hand-over to the team
// through a Slack-shaped incoming webhook, a JSON POST of
// `{"text": …, "blocks": […]}`, as the Rust `slack` plugin does.
//
//   journeyd integration set team --plugin team-chat --host hooks.slack.com \
//       --secret webhook_path=env:SLACK_WEBHOOK_PATH
//   config: { "url": "https://hooks.slack.com/services/{{secret:webhook_path}}" }  (this default)
//
// The subject goes first in bold, then the body, then the message's
// metadata as fields (the hand-over's customer view, at most ten). 2xx
// accepts; 404 and 410 refuse the message with Slack's reason (410 also
// disables the integration); 408, 429 and 5xx are retried.
import { Request, Verdict } from './journey-channel.js';

const DEFAULT_URL = 'https://hooks.slack.com/services/{{secret:webhook_path}}';

export function render(message, config) {
  const text = message.subject ? `*${message.subject}*\n${message.body}` : message.body;
  const blocks = [{ type: 'section', text: { type: 'mrkdwn', text } }];
  const metadata = message.metadata && typeof message.metadata === 'object' ? message.metadata : {};
  const fields = Object.entries(metadata)
    .filter(([, value]) => ['string', 'number', 'boolean'].includes(typeof value))
    .slice(0, 10)
    .map(([name, value]) => ({ type: 'mrkdwn', text: `*${name}*\n${value}` }));
  if (fields.length > 0) blocks.push({ type: 'section', fields });
  return Request.post(config?.url ?? DEFAULT_URL).json({ text, blocks });
}

export function interpret(message, response) {
  const verdict = Verdict.fromStatus(response.status);
  if (verdict.tag === 'rejected' && response.body.trim()) {
    return Verdict.rejected(`${response.body.trim()} (${response.status})`);
  }
  return verdict;
}
