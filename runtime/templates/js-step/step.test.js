// The step's unit tests, natively: node --test
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Outcome } from './journey-sdk.js';
import { runStep } from './journey-testing.js';
import { greet } from './step.js';

test('greets by name on the preferred channel', () => {
  const result = runStep(greet, {
    config: { greeting: 'Hi' },
    customer: { profile: { name: 'Ada' }, channels: { sms: true } },
  });
  assert.equal(result.error, null);
  assert.deepEqual(result.outcome, Outcome.goto('sent'));
  assert.deepEqual(result.messages.map((m) => [m.channel, m.body]), [['sms', 'Hi, Ada!']]);
  assert.equal(result.state.greetings, 1);
});

test('goes on when a frequency cap says no', () => {
  const result = runStep(greet, { caps: { email: 0 } });
  assert.deepEqual(result.outcome, Outcome.goto('capped'));
  assert.equal(result.messages.length, 0);
});
