// Channel `{{name}}`: deliver each message as a signed JSON POST to the
// provider's URL and read its status callbacks; journeyd does all the I/O.
//
// Config: `url` (where to POST), `secret` (the name of the secret that
// signs, default `signing_key`).
import { Rejected, Request, Verdict } from './journey-channel.js';

export function render(message, config) {
  if (typeof config.url !== 'string') throw new Error('config: `url` is missing');
  if (!message.to) throw new Rejected('the customer has no address');
  return Request.post(config.url)
    .json({ id: message.id, to: message.to, text: message.body })
    .signedWith(config.secret ?? 'signing_key');
}

export function interpret(message, response) {
  return Verdict.fromStatus(response.status);
}

export function parseCallback(callback) {
  const report = JSON.parse(callback.body);
  return [{ messageId: report.message_id, providerId: report.message_id, status: report.status, atMs: undefined, detail: '{}' }];
}
