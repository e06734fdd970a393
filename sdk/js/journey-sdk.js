// Write journey steps for journeyd in JavaScript: the pure part of the SDK
// (no host imports), so a step's logic runs under Node for tests too.
//
//   import { Message, Outcome } from './journey-sdk.js';
//
//   export function greet(ctx) {
//     const name = ctx.customer().profile.name ?? 'there';
//     ctx.send(new Message('email', `${ctx.config.greeting}, ${name}!`));
//     ctx.set('greeted', true);
//     return Outcome.goto('done');
//   }
//
// `journey-host.js` wires a step function to the component's `step` export
// (`export const step = exportStep(greet)`), `journey-testing.js` runs it
// natively against a fake host. The SDK mirrors the Rust and Python ones.

/** Throw to fail this attempt with a reason (the step's retry policy runs
 * it again). Any other exception fails the attempt too, with its stack. */
export class StepFailed extends Error {}

/** The host did not queue a message: a frequency cap was reached (`cap`
 * says which), or the step queued the most messages a step may (`cap` is
 * null). */
export class SendRefused extends Error {
  constructor(cap) {
    super(
      cap
        ? `the customer's ${cap.channel} frequency cap is reached (${cap.limit} per ${Math.floor(cap.periodMs / 1000)} s; the next message is allowed at ${cap.nextAllowedMs} ms)`
        : 'the step already queued the most messages a step may',
    );
    this.cap = cap ?? null;
  }
}

/** Hours of the local day in which a journey may contact a customer; an
 * empty `timeZone` means the customer's profile `time_zone`. */
export class Window {
  constructor(fromMinute, toMinute, timeZone = '') {
    Object.assign(this, { fromMinute, toMinute, timeZone });
  }

  static hours(from, to) {
    return new Window(from * 60, to * 60);
  }

  /** `"09:00-20:00"` or `"09:00-20:00 Europe/Amsterdam"`. */
  static parse(text) {
    const match = /^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})(?:\s+(\S+))?$/.exec(text.trim());
    const minutes = match && [[match[1], match[2]], [match[3], match[4]]].map(([h, m]) => Number(h) * 60 + Number(m));
    if (!match || Number(match[2]) >= 60 || Number(match[4]) >= 60 || minutes.some((m) => m > 1440)) {
      throw new StepFailed(`sending window \`${text}\` is not \`HH:MM-HH:MM\` with an optional time zone`);
    }
    return new Window(minutes[0], minutes[1], match[5] ?? '');
  }
}

/** Where the instance goes after the step. */
export const Outcome = {
  /** Follow the named transition (`on.<name>` in the journey). */
  goto: (transition) => ({ kind: 'goto', transition }),
  /** The instance finished successfully. */
  complete: () => ({ kind: 'complete' }),
  /** The instance failed, at once and without retries (a decision). */
  fail: (reason) => ({ kind: 'fail', reason }),
  /** Sleep until `untilMs` (a durable timer), then follow `then`; with a
   * window, a wake-up in quiet hours moves to its next opening. */
  sleepUntil: (untilMs, then, window = null) => ({ kind: 'sleep-until', untilMs, then, window }),
  /** Wait (durably) for an event of type `eventKind` about this instance. */
  waitForEvent: (eventKind, timeoutMs, onEvent, onTimeout) => ({
    kind: 'wait-for-event',
    eventKind,
    timeoutMs,
    onEvent,
    onTimeout,
  }),
};

/** A message to queue with `ctx.send`; an empty `to` means the customer's
 * address from their profile. */
export class Message {
  constructor(channel, body, { subject = '', to = '', metadata = {} } = {}) {
    Object.assign(this, { channel, body, subject, to, metadata });
  }
}

/** A running step: its input and the host capabilities it may use.
 * Effects are committed with the step's outcome, or not at all. The host
 * is `journey-host.js`'s in the component, a fake one in tests. */
export class Context {
  #input;
  #host;
  #state = null;
  #changed = false;

  constructor(input, host) {
    this.#input = input;
    this.#host = host;
  }

  get journey() { return this.#input.journey; }
  get step() { return this.#input.step; }
  get instanceId() { return this.#input.instanceId; }
  /** 1 on the first attempt; more when the step runs again. */
  get attempt() { return this.#input.attempt; }
  /** The same on every attempt of this step execution. */
  get idempotencyKey() { return this.#input.idempotencyKey; }
  /** The event the step sees, with `data` parsed. */
  get event() {
    const event = this.#input.event;
    return { ...event, data: JSON.parse(event.data) };
  }
  /** The step's `config` table from the journey definition. */
  get config() { return JSON.parse(this.#input.config); }

  #loaded() {
    this.#state ??= JSON.parse(this.#input.state);
    return this.#state;
  }

  /** A value of the instance state (what earlier steps set). */
  get(key, fallback = undefined) {
    return this.#loaded()[key] ?? fallback;
  }

  /** Set a value of the instance state (committed with the step). */
  set(key, value) {
    this.#loaded()[key] = value;
    this.#changed = true;
  }

  /** The customer view: `{ id, profile, interactions, channels, engagement }`
   * with up to `maxInteractions` recent interactions of `kinds`. */
  customer(maxInteractions = 0, kinds = []) {
    return this.#host.view(maxInteractions, kinds);
  }

  /** Add an interaction to the customer's history. */
  note(channel, kind, text, details = {}) {
    this.#host.note(channel, kind, text, details);
  }

  /** Queue a message; returns its id. Throws `SendRefused` at a cap. */
  send(message) {
    return this.#host.send(message);
  }

  /** Add to a counter (`journeyd_plugin_<name>_total`). */
  count(name, value = 1) {
    this.#host.count(name, value);
  }

  /** The runtime's clock at the step's start (simulated or real), ms. */
  nowMs() {
    return this.#host.nowMs();
  }

  info(text) { this.#host.log('info', text); }
  warn(text) { this.#host.log('warn', text); }

  /** The whole state if the step set anything, else null. */
  stateIfChanged() {
    return this.#changed ? this.#state : null;
  }
}

/** Run `step` and return `{ outcome, state }`; an exception becomes
 * `StepFailed` with its reason (the stack, for a bug). */
export function run(step, input, host) {
  const ctx = new Context(input, host);
  let outcome;
  try {
    outcome = step(ctx);
  } catch (error) {
    if (error instanceof StepFailed) throw error;
    // V8's stack starts with the message, SpiderMonkey's (in the
    // component) does not.
    const text = String(error);
    const stack = error?.stack ?? '';
    throw new StepFailed(stack.startsWith(text) ? stack : `${text}\n${stack}`.trim());
  }
  if (!outcome || typeof outcome.kind !== 'string') {
    throw new StepFailed(`the step returned ${JSON.stringify(outcome)}, not an Outcome`);
  }
  return { outcome, state: ctx.stateIfChanged() };
}
