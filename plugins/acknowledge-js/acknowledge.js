// Enquiry step `acknowledge` in JavaScript: the Rust plugin's contract
// (plugins/acknowledge) written with the JavaScript SDK, so the example can
// hot-swap it in. Tell the customer at once, on the channel they wrote on
// (else their preferred one, else `default_channel`), that their enquiry
// arrived.
//
// Config: `template` (with `{name}` and `{enquiry_id}`), `subject`,
// `default_channel` (email). Transition: `sent` (also when a frequency cap
// refused the message: the enquiry goes on regardless).
import { Message, Outcome, SendRefused, StepFailed } from './journey-sdk.js';

export function acknowledge(ctx) {
  const config = ctx.config;
  if (typeof config.template !== 'string') throw new StepFailed('invalid step config: missing field `template`');
  const enquiry = ctx.event.data;
  if (typeof enquiry.enquiry_id !== 'string') throw new StepFailed('invalid event data: missing field `enquiry_id`');
  const customer = ctx.customer();
  const name = customer.profile.name ?? 'there';
  const channel = enquiry.channel ?? customer.profile.preferred_channel ?? config.default_channel ?? 'email';
  const body = config.template.replaceAll('{name}', name).replaceAll('{enquiry_id}', enquiry.enquiry_id);
  ctx.set('channel', channel);
  try {
    ctx.set('acknowledgement', ctx.send(new Message(channel, body, { subject: config.subject ?? '' })));
  } catch (error) {
    if (!(error instanceof SendRefused)) throw error;
    ctx.warn(`acknowledgement not sent: ${error.message}`);
  }
  ctx.set('acknowledged_at_ms', ctx.nowMs());
  return Outcome.goto('sent');
}
