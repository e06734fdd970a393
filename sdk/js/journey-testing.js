// Run a step natively under Node, without a component, a server or a
// store: a fake host stands in for journeyd's, with the customer view,
// frequency caps and clock you choose, and records what the step did.
//
//   import { runStep } from './journey-testing.js';
//   const result = runStep(greet, { config: { greeting: 'Hi' }, customer: { profile: { name: 'Ada' } } });
//   assert.deepEqual(result.outcome, Outcome.goto('done'));
//
// It runs the same `run` the component runs (journey-sdk.js).

import { SendRefused, StepFailed, run } from './journey-sdk.js';

/** The most messages one step may queue (as in journeyd). */
export const MAX_MESSAGES = 16;

/** Stands in for journeyd's host imports and records every effect. `caps`
 * maps a channel to how many more messages its cap allows. */
export class FakeHost {
  constructor({ customer = {}, caps = {}, nowMs = 1_796_112_000_000, idempotencyKey = 'test-key' } = {}) {
    this.customer = {
      id: customer.id ?? 'c-test',
      profile: customer.profile ?? {},
      interactions: customer.interactions ?? [],
      channels: customer.channels ?? {},
      engagement: customer.engagement ?? [],
    };
    this.caps = { ...caps };
    this.clock = nowMs;
    this.key = idempotencyKey;
    this.messages = [];
    this.refused = [];
    this.notes = [];
    this.metrics = {};
    this.logs = [];
  }

  view(maxInteractions, kinds) {
    const matching = this.customer.interactions.filter((item) => kinds.length === 0 || kinds.includes(item.kind));
    return { ...this.customer, interactions: maxInteractions ? matching.slice(-maxInteractions) : [] };
  }

  note(channel, kind, text, details) {
    JSON.stringify(details);
    this.notes.push({ channel, kind, text, details });
  }

  send(message) {
    if (this.messages.length >= MAX_MESSAGES) throw new SendRefused(null);
    const left = this.caps[message.channel];
    if (left !== undefined && left <= 0) {
      this.refused.push(message);
      throw new SendRefused({ channel: message.channel, limit: 0, periodMs: 86_400_000, nextAllowedMs: this.clock + 86_400_000 });
    }
    if (left !== undefined) this.caps[message.channel] = left - 1;
    this.messages.push(message);
    return `${this.key}/m${this.messages.length - 1}`;
  }

  count(name, value) {
    this.metrics[name] = (this.metrics[name] ?? 0) + value;
  }

  nowMs() {
    return this.clock;
  }

  log(level, text) {
    this.logs.push([level, text]);
  }
}

/** Run `step` once against a `FakeHost`: `{ outcome, state, error,
 * messages, refused, notes, metrics, logs }`; when the attempt failed,
 * `error` is its reason, `outcome` is null and no effect is kept. */
export function runStep(step, { config = {}, state = {}, event = {}, customer, caps, nowMs = 1_796_112_000_000, attempt = 1, journey = 'test', name = 'step' } = {}) {
  const host = new FakeHost({ customer, caps, nowMs });
  const input = {
    journey,
    journeyVersion: 1,
    instanceId: 'i-1',
    step: name,
    event: {
      id: event.id ?? 'evt-1',
      kind: event.kind ?? 'test.event',
      customerId: host.customer.id,
      data: JSON.stringify(event.data ?? {}),
      receivedAtMs: nowMs,
    },
    state: JSON.stringify(state),
    config: JSON.stringify(config),
    attempt,
    idempotencyKey: host.key,
  };
  try {
    const { outcome, state: changed } = run(step, input, host);
    return { outcome, state: changed, error: null, messages: host.messages, refused: host.refused, notes: host.notes, metrics: host.metrics, logs: host.logs };
  } catch (error) {
    if (!(error instanceof StepFailed)) throw error;
    return { outcome: null, state: null, error: error.message, messages: [], refused: host.refused, notes: [], metrics: {}, logs: host.logs };
  }
}
