// The channel's unit tests, natively: node --test
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { interpret, parseCallback, render } from './channel.js';
import { Rejected } from './journey-channel.js';

const message = (to) => ({ id: 'i-1/s/1/m0', channel: 'chat', to, subject: '', body: 'Hello', metadata: {} });

test('renders a signed post and refuses a message without an address', () => {
  const request = render(message('+15550100'), { url: 'https://provider.example/messages' });
  assert.equal(request.method, 'POST');
  assert.match(request.body, /\+15550100/);
  assert.deepEqual(request.signature, { tag: 'standard-webhooks', val: 'signing_key' });
  assert.throws(() => render(message(''), { url: 'https://provider.example/messages' }), Rejected);
});

test('reads answers and callbacks', () => {
  assert.equal(interpret(message('x'), { status: 503, headers: [], body: '' }).tag, 'retry');
  const updates = parseCallback({ headers: [], body: '{"message_id": "m", "status": "delivered"}' });
  assert.deepEqual(updates.map((u) => [u.providerId, u.status]), [['m', 'delivered']]);
});
