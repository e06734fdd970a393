// Channel plugins in JavaScript: the request builder and verdicts of the
// `channel` interface (journey:plugin@0.2.0), and `exportChannel`, which
// turns three plain functions into the component's `channel` export. No
// host imports: a channel plugin is a pure function of its input (safe to
// call again on every retry), and this file runs under Node for tests too.
//
//   import { exportChannel, Request, Verdict } from './journey-channel.js';
//
//   export const channel = exportChannel({
//     render(message, config) {
//       return Request.post(config.url).json({ text: message.body });
//     },
//     interpret(message, response) {
//       return Verdict.fromStatus(response.status);
//     },
//   });
//
// `render` gets the message ({ id, channel, to, subject, body, metadata
// (parsed), customerId, journey, instanceId, step, attempt }) and the
// integration's config (parsed); it returns a `Request` or throws
// `Rejected` (the message can never be sent: it is dead) or anything else
// (misconfigured: the attempt is retried). Secrets are named in URLs and
// header values as `{{secret:NAME}}`; the host fills them in.

/** Throw from `render` when this message can never be sent. */
export class Rejected extends Error {}

/** A provider request. */
export class Request {
  constructor(method, url) {
    this.method = method;
    this.url = url;
    this.headers = [];
    this.body = '';
    this.signature = null;
  }

  static post(url) {
    return new Request('POST', url);
  }

  /** Add a header (its value may name secrets as `{{secret:NAME}}`). */
  header(name, value) {
    this.headers.push({ name, value });
    return this;
  }

  /** A JSON body, with its content type. */
  json(value) {
    this.body = JSON.stringify(value);
    return this.header('Content-Type', 'application/json');
  }

  /** Ask the host to sign the request (Standard Webhooks) with the
   * integration's secret of this name. */
  signedWith(secret) {
    this.signature = { tag: 'standard-webhooks', val: secret };
    return this;
  }
}

/** What a provider's answer means. */
export const Verdict = {
  /** The provider took the message (with its id for it, when it gave one). */
  accepted: (providerId = undefined) => ({ tag: 'accepted', val: providerId }),
  /** Try again later (at least `afterMs` later, when given). */
  retry: (reason, afterMs = undefined) => ({
    tag: 'retry',
    val: { reason, afterMs: afterMs === undefined ? undefined : BigInt(afterMs) },
  }),
  /** Refused for good: the message is dead. */
  rejected: (reason) => ({ tag: 'rejected', val: reason }),
  /** 2xx accepted; 408, 425, 429 and 5xx retried; anything else refused. */
  fromStatus(status, providerId = undefined) {
    if (status >= 200 && status < 300) return Verdict.accepted(providerId);
    if ([408, 425, 429].includes(status) || (status >= 500 && status < 600)) {
      return Verdict.retry(`the provider answered ${status}`);
    }
    return Verdict.rejected(`the provider refused the message (${status})`);
  },
};

function parsed(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function message(wit) {
  return { ...wit, metadata: parsed(wit.metadata) };
}

/** The component's `channel` export over `{ render, interpret?,
 * parseCallback? }`. Without `interpret`, the status decides
 * (`Verdict.fromStatus`); without `parseCallback`, callbacks report
 * nothing. */
export function exportChannel({ render, interpret, parseCallback }) {
  return {
    render(wit, config) {
      let request;
      try {
        request = render(message(wit), parsed(config));
        if (!(request instanceof Request) || typeof request.url !== 'string' || typeof request.method !== 'string') {
          throw new Error(`render returned ${JSON.stringify(request)}, not a Request with a method and a URL`);
        }
      } catch (error) {
        // The `err` of render's result: a render-error variant.
        throw error instanceof Rejected
          ? { tag: 'rejected', val: error.message }
          : { tag: 'misconfigured', val: String(error?.message ?? error) };
      }
      return {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
        signature: request.signature ?? undefined,
      };
    },
    interpret(wit, response, config) {
      const answer = { ...response, body: response.body };
      return interpret
        ? interpret(message(wit), answer, parsed(config))
        : Verdict.fromStatus(response.status);
    },
    parseCallback(callback, config) {
      if (!parseCallback) return [];
      try {
        return parseCallback(callback, parsed(config));
      } catch (error) {
        throw String(error?.message ?? error);
      }
    },
  };
}
