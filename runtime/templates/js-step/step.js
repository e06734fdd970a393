// Step `{{name}}`: greet the customer on their preferred channel, or go on
// when a frequency cap says no.
//
// Config: `greeting` (default "Hello"). Transitions: `sent`, `capped`.
import { Message, Outcome, SendRefused } from './journey-sdk.js';

export function greet(ctx) {
  const customer = ctx.customer();
  const name = customer.profile.name ?? 'there';
  const channel = customer.channels.sms ? 'sms' : 'email';
  ctx.set('greetings', ctx.get('greetings', 0) + 1);
  let messageId;
  try {
    messageId = ctx.send(new Message(channel, `${ctx.config.greeting ?? 'Hello'}, ${name}!`));
  } catch (error) {
    if (!(error instanceof SendRefused)) throw error;
    ctx.warn(error.message);
    return Outcome.goto('capped');
  }
  ctx.set('greetingMessage', messageId);
  return Outcome.goto('sent');
}
