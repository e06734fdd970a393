// The glue between a step function and the component: journeyd's host
// imports (journey:plugin@0.2.0) behind the `Context` of journey-sdk.js,
// and the `step` export. Only the component imports this file; tests use
// journey-testing.js.
//
//   import { exportStep } from './journey-host.js';
//   import { greet } from './greet.js';
//   export const step = exportStep(greet);

import { view, note } from 'journey:plugin/customer@0.2.0';
import { send } from 'journey:plugin/outbox@0.2.0';
import { count } from 'journey:plugin/metrics@0.2.0';
import { nowMs } from 'journey:plugin/clock@0.2.0';
import { write } from 'journey:plugin/log@0.2.0';

import { SendRefused, StepFailed, run } from './journey-sdk.js';

/** The host imports of the step world, in the SDK's terms. */
export const witHost = {
  view(maxInteractions, kinds) {
    const customer = view(maxInteractions, kinds);
    return {
      id: customer.id,
      profile: customer.profile ? JSON.parse(customer.profile) : {},
      interactions: customer.interactions.map((item) => ({
        atMs: Number(item.atMs),
        channel: item.channel,
        kind: item.kind,
        text: item.text,
        details: JSON.parse(item.details),
      })),
      channels: Object.fromEntries(customer.channels.map((choice) => [choice.channel, choice.optedIn])),
      engagement: customer.engagement.map((item) => ({
        atMs: Number(item.atMs),
        action: item.action,
        channel: item.channel,
        eventKind: item.eventKind,
        details: JSON.parse(item.details),
      })),
    };
  },
  note(channel, kind, text, details) {
    note(channel, kind, text, JSON.stringify(details));
  },
  send(message) {
    try {
      return send({
        channel: message.channel,
        to: message.to,
        subject: message.subject,
        body: message.body,
        metadata: JSON.stringify(message.metadata),
      });
    } catch (error) {
      const refusal = error?.payload;
      if (refusal?.tag === 'frequency-capped') {
        const cap = refusal.val;
        throw new SendRefused({
          channel: cap.channel,
          limit: cap.limit,
          periodMs: Number(cap.periodMs),
          nextAllowedMs: Number(cap.nextAllowedMs),
        });
      }
      if (refusal?.tag === 'too-many-messages') throw new SendRefused(null);
      throw error;
    }
  },
  count(name, value) {
    count(name, BigInt(value));
  },
  nowMs() {
    return Number(nowMs());
  },
  log(level, text) {
    write(level, text);
  },
};

function toWit(outcome) {
  switch (outcome.kind) {
    case 'goto':
      return { tag: 'goto', val: outcome.transition };
    case 'complete':
      return { tag: 'complete' };
    case 'fail':
      return { tag: 'fail', val: outcome.reason };
    case 'sleep-until':
      return {
        tag: 'sleep-until',
        val: {
          untilMs: BigInt(outcome.untilMs),
          then: outcome.then,
          window: outcome.window ?? undefined,
        },
      };
    case 'wait-for-event':
      return {
        tag: 'wait-for-event',
        val: {
          kind: outcome.eventKind,
          timeoutMs: BigInt(outcome.timeoutMs),
          onEvent: outcome.onEvent,
          onTimeout: outcome.onTimeout,
        },
      };
    default:
      throw new StepFailed(`unknown outcome kind \`${outcome.kind}\``);
  }
}

/** The component's `step` export running `step`. A `StepFailed` (or any
 * exception) fails the attempt with its reason. */
export function exportStep(step) {
  return {
    run(input) {
      let ran;
      try {
        ran = run(step, input, witHost);
      } catch (error) {
        // The `err` of the export's result: componentize-js takes the
        // thrown value itself as the error string.
        throw error instanceof StepFailed ? error.message : String(error);
      }
      const { outcome, state } = ran;
      return {
        outcome: toWit(outcome),
        state: state === null ? undefined : JSON.stringify(state),
      };
    },
  };
}
