// team-chat natively: node --test plugins/team-chat
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { interpret, render } from './chat.js';

const message = {
  id: 'i-1/handover/1/m0',
  channel: 'team',
  to: '',
  subject: 'Billing enquiry q-7 (high)',
  body: 'Ada was charged twice.',
  metadata: { customer: 'c-ada', tier: 'gold', history: [1, 2] },
};

test('renders the hand-over with its subject, body and customer fields', () => {
  const request = render(message, {});
  assert.equal(request.method, 'POST');
  assert.equal(request.url, 'https://hooks.slack.com/services/{{secret:webhook_path}}');
  const body = JSON.parse(request.body);
  assert.equal(body.text, '*Billing enquiry q-7 (high)*\nAda was charged twice.');
  assert.deepEqual(
    body.blocks[1].fields.map((field) => field.text),
    ['*customer*\nc-ada', '*tier*\ngold'],
  );
  assert.deepEqual(request.headers, [{ name: 'Content-Type', value: 'application/json' }]);
});

test('reads Slack answers: accepted, retried, refused with its reason', () => {
  assert.deepEqual(interpret(message, { status: 200, headers: [], body: 'ok' }), { tag: 'accepted', val: undefined });
  assert.equal(interpret(message, { status: 503, headers: [], body: '' }).tag, 'retry');
  assert.deepEqual(interpret(message, { status: 410, headers: [], body: 'channel_is_archived' }), {
    tag: 'rejected',
    val: 'channel_is_archived (410)',
  });
});
