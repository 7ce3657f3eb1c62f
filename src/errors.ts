import type { FailureInfo, FailureKind } from './types.js';

/** An error a node answers with: its HTTP status and a `{error, detail}` body. */
export class HttpError extends Error {
  /** Headers the answer carries besides its body (`Retry-After`). */
  headers: Record<string, string> = {};

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export class BadRequest extends HttpError {
  constructor(message: string) {
    super(400, 'bad_request', message);
  }
}

/** A call for an `env` no live node (or not this node) has; the client makes it a `RemoteError` of kind `rejected`. */
export class UnknownEnvironment extends HttpError {
  constructor(message: string) {
    super(400, 'unknown_env', message);
  }
}

export class Unauthorized extends HttpError {
  constructor(message = 'missing or wrong bearer token') {
    super(401, 'unauthorized', message);
  }
}

export class Forbidden extends HttpError {
  constructor(message: string) {
    super(403, 'forbidden', message);
  }
}

export class NotFound extends HttpError {
  constructor(message: string) {
    super(404, 'not_found', message);
  }
}

export class Conflict extends HttpError {
  constructor(message: string) {
    super(409, 'conflict', message);
  }
}

export class PayloadTooLarge extends HttpError {
  constructor(message: string) {
    super(413, 'payload_too_large', message);
  }
}

export class UnsupportedMediaType extends HttpError {
  constructor(message: string) {
    super(415, 'unsupported_media_type', message);
  }
}

export class RangeNotSatisfiable extends HttpError {
  constructor(message: string) {
    super(416, 'range_not_satisfiable', message);
  }
}

export class TooManyRequests extends HttpError {
  /** `retryAfterS`: seconds the client should wait before trying again. */
  constructor(message: string, retryAfterS = 1) {
    super(429, 'too_many_requests', message);
    this.headers = { 'retry-after': String(retryAfterS) };
  }
}

export class InsufficientStorage extends HttpError {
  constructor(message: string) {
    super(507, 'insufficient_storage', message);
  }
}

/**
 * A call that did not return a value: a Python exception (with its real traceback), a
 * timeout, a cancellation, a crashed interpreter, a lost node, or a call the node refused.
 */
export class RemoteError extends Error {
  /** What happened: `exception`, `timeout`, `cancelled`, `crashed`, `lost`, `rejected` or `sla` (the call runs on). */
  readonly kind: FailureKind;
  /** The Python exception's type, e.g. `ZeroDivisionError`. */
  readonly pythonType?: string;
  /** The Python traceback as Python printed it. */
  readonly traceback?: string;
  readonly taskId?: string;
  /** The host the call ran on, when it ran. */
  readonly host?: string;
  readonly exitCode?: number | null;
  readonly signal?: string | null;

  constructor(info: FailureInfo, taskId?: string, host?: string) {
    const prefix = info.pythonType ? `${info.pythonType}: ` : '';
    super(`${prefix}${info.message}`);
    this.name = 'RemoteError';
    this.kind = info.kind;
    this.pythonType = info.pythonType;
    this.traceback = info.traceback;
    this.taskId = taskId;
    this.host = host;
    this.exitCode = info.exitCode;
    this.signal = info.signal;
    if (info.traceback) this.stack = `${this.name} [${this.kind}] ${this.message}\n${info.traceback}`;
  }
}

/** An HTTP answer from a node that was not a success. */
export class NodeRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly url: string,
  ) {
    super(`${url}: ${status} ${code}: ${detail}`);
    this.name = 'NodeRequestError';
  }
}

/** A node's non-2xx answer (`{error, detail}`, or whatever text it sent) as a NodeRequestError. */
export function answerError(status: number, body: unknown, target: string): NodeRequestError {
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      // not JSON: keep the text
    }
  }
  const failure = (body && typeof body === 'object' ? body : {}) as { error?: string; detail?: string };
  return new NodeRequestError(status, failure.error ?? 'http_error', failure.detail ?? String(body).slice(0, 500), target);
}
