// acknowledge.js natively, the same cases as the Rust plugin's: node --test plugins/acknowledge-js
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { acknowledge } from './acknowledge.js';
import { Outcome } from './journey-sdk.js';
import { runStep } from './journey-testing.js';

const config = { template: 'Hi {name}, we got {enquiry_id}.', subject: 'Got it' };

test('answers on the channel the customer wrote on, else their preference', () => {
  const wrote = runStep(acknowledge, {
    config,
    event: { kind: 'enquiry.received', data: { enquiry_id: 'q-7', channel: 'chat' } },
    customer: { profile: { name: 'Ada', preferred_channel: 'sms' } },
    nowMs: 1000,
  });
  assert.deepEqual(wrote.outcome, Outcome.goto('sent'));
  assert.deepEqual(wrote.messages.map((m) => [m.channel, m.body, m.subject]), [['chat', 'Hi Ada, we got q-7.', 'Got it']]);
  assert.deepEqual(wrote.state, { channel: 'chat', acknowledgement: 'test-key/m0', acknowledged_at_ms: 1000 });
  const preferred = runStep(acknowledge, {
    config,
    event: { data: { enquiry_id: 'q-8' } },
    customer: { profile: { preferred_channel: 'sms' } },
  });
  assert.equal(preferred.messages[0].channel, 'sms');
  assert.equal(preferred.messages[0].body, 'Hi there, we got q-8.');
});

test('goes on when capped, and fails without its config', () => {
  const capped = runStep(acknowledge, { config, event: { data: { enquiry_id: 'q-9' } }, caps: { email: 0 } });
  assert.deepEqual(capped.outcome, Outcome.goto('sent'));
  assert.equal(capped.messages.length, 0);
  assert.match(capped.logs[0][1], /acknowledgement not sent/);
  const broken = runStep(acknowledge, { event: { data: { enquiry_id: 'q-9' } } });
  assert.match(broken.error, /missing field `template`/);
});
