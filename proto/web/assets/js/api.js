// Shared client for centralino's browser API (JSON over HTTP + Server-Sent Events).
//
// - `request(base, path, options)` sends JSON and returns the parsed answer; an error answer
//   (`{"code": "INVALID_ARGUMENT", "message": "..."}`) is thrown as an `ApiError` whose
//   `.code` is the gRPC status name, `.status` the HTTP status and `.retryAfterMs` the
//   `Retry-After` header (429) in milliseconds. A network failure is `.code === "NETWORK"`,
//   a timeout `.code === "TIMEOUT"`.
// - `openStream(url, options)` reads an SSE stream with fetch() + ReadableStream (so the
//   `Authorization: Bearer` header can be sent), parses `id:` / `event:` / `data:` lines,
//   reconnects with backoff sending `Last-Event-ID`, and stops after a stop event (`closed`
//   by default) once the server ends the stream. A last `event: error` (`{code, message}`:
//   the server's stream failed) reconnects when the code is retryable and ends otherwise.

/** An error answer of the API (or a network failure). */
export class ApiError extends Error {
  constructor(message, code, status = 0, retryAfterMs = 0) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Codes after which the same request may succeed later (idempotent requests only). */
const RETRYABLE = new Set([
  'NETWORK',
  'TIMEOUT',
  'UNAVAILABLE',
  'DEADLINE_EXCEEDED',
  'RESOURCE_EXHAUSTED',
  'ABORTED',
  'INTERNAL',
  'UNKNOWN',
]);

/** True when retrying the same (idempotent) request may succeed. */
export function isRetryable(err) {
  if (!(err instanceof ApiError)) return false;
  return RETRYABLE.has(err.code) || err.status >= 502;
}

/** Codes after which a stream must not be reopened: the token or the resource is gone. */
const FATAL_STREAM = new Set([
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'NOT_FOUND',
  'INVALID_ARGUMENT',
  'FAILED_PRECONDITION',
]);

/** A fresh random id for client-chosen message and request ids. */
export function newId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') {
    try {
      return c.randomUUID();
    } catch {
      // randomUUID needs a secure context in some browsers: fall through.
    }
  }
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function retryAfterMs(response) {
  const value = response.headers.get('Retry-After');
  if (!value) return 0;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : 0;
}

const HTTP_CODES = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  413: 'INVALID_ARGUMENT',
  429: 'RESOURCE_EXHAUSTED',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

/** Builds an ApiError from a non-2xx response (its JSON body when there is one). */
export async function errorFromResponse(response) {
  let code = HTTP_CODES[response.status] || (response.status >= 500 ? 'INTERNAL' : 'UNKNOWN');
  let message = `HTTP ${response.status}`;
  try {
    const text = await response.text();
    if (text) {
      const body = JSON.parse(text);
      if (body && typeof body.code === 'string') code = body.code;
      if (body && typeof body.message === 'string') message = body.message;
    }
  } catch {
    // Not JSON (a proxy's error page): keep the code derived from the status.
  }
  return new ApiError(message, code, response.status, retryAfterMs(response));
}

/** Joins an API base (origin or '' for the same origin) and a path. */
export function joinUrl(base, path) {
  if (!base) return path;
  return base.replace(/\/+$/, '') + path;
}

/**
 * Sends a request and returns its JSON answer ({} for an empty answer).
 * options: `method` ('POST' when a body is given, else 'GET'), `body` (serialised as JSON),
 * `token` (Bearer), `timeoutMs` (15 s), `signal`.
 */
export async function request(base, path, options = {}) {
  const { body, token, timeoutMs = 15000, signal } = options;
  const method = options.method || (body !== undefined ? 'POST' : 'GET');
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const onAbort = () => controller.abort();
  if (signal) signal.addEventListener('abort', onAbort, { once: true });
  let response;
  try {
    response = await fetch(joinUrl(base, path), {
      method,
      headers,
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal: controller.signal,
      credentials: 'omit',
      cache: 'no-store',
    });
    if (!response.ok) throw await errorFromResponse(response);
    const text = await response.text();
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiError('the answer is not JSON', 'INTERNAL', response.status);
    }
  } catch (err) {
    if (err instanceof ApiError) throw err;
    if (timedOut) throw new ApiError('the request timed out', 'TIMEOUT');
    if (signal && signal.aborted) throw new ApiError('the request was cancelled', 'CANCELLED');
    throw new ApiError(err && err.message ? err.message : 'network error', 'NETWORK');
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener('abort', onAbort);
  }
}

/** Waits `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Backoff delay for the n-th retry (from 0): 0.5 s doubling up to `maxMs`, with jitter. */
export function backoff(attempt, maxMs = 15000) {
  const base = Math.min(maxMs, 500 * 2 ** Math.min(attempt, 10));
  return Math.round(base * (0.6 + Math.random() * 0.4));
}

/**
 * Calls `fn()` until it succeeds or fails with a non-retryable error, waiting with backoff
 * (or `Retry-After`) between attempts. `maxAttempts` (Infinity by default) bounds the tries;
 * `onRetry(err, attempt, delayMs)` is told about each retry; `shouldStop()` ends early.
 */
export async function withRetry(fn, { maxAttempts = Infinity, onRetry, shouldStop } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await fn();
    } catch (err) {
      if (!isRetryable(err) || attempt + 1 >= maxAttempts || (shouldStop && shouldStop())) {
        throw err;
      }
      const delay = Math.max(err.retryAfterMs || 0, backoff(attempt));
      if (onRetry) onRetry(err, attempt, delay);
      await sleep(delay);
      if (shouldStop && shouldStop()) throw err;
    }
  }
}

/**
 * Parses Server-Sent Events from text chunks. `push(chunk)` feeds text; every complete event
 * is given to `onEvent({ id, kind, data, raw })` where `id` is the event's `id:` ('' when the
 * event had none: an ephemeral event), `kind` the `event:` name ('message' by default) and
 * `data` the parsed JSON (or null when it is not JSON; `raw` keeps the text). `onComment()` is
 * called for comment lines (the keepalive).
 */
export class SseParser {
  constructor(onEvent, onComment = () => {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.buffer = '';
    this.reset();
  }

  reset() {
    this.id = '';
    this.kind = '';
    this.data = [];
  }

  push(chunk) {
    this.buffer += chunk;
    // A lone '\r' at the end may be the first half of '\r\n': keep it for the next chunk.
    const lines = this.buffer.split(/\r\n|\n|\r(?!$)/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) {
      this.onComment(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'id') {
      if (!value.includes('\0')) this.id = value;
    } else if (field === 'event') this.kind = value;
    else if (field === 'data') this.data.push(value);
    // `retry:` and unknown fields are ignored: the client keeps its own backoff.
  }

  dispatch() {
    if (this.data.length === 0) {
      this.reset();
      return;
    }
    const raw = this.data.join('\n');
    let data = null;
    try {
      data = JSON.parse(raw);
    } catch {
      data = null;
    }
    const event = { id: this.id, kind: this.kind || 'message', data, raw };
    this.reset();
    this.onEvent(event);
  }
}

/** Milliseconds without a byte after which a stream is taken for dead (keepalive is 15 s). */
const STREAM_IDLE_MS = 45000;
/** How long a stream may stay open after its stop event before it is cut. */
const STOP_GRACE_MS = 4000;

/**
 * Opens an SSE stream and keeps it open across drops.
 *
 * options:
 * - `token`: Bearer token (string, or a function returning one).
 * - `lastEventId`: the last event id already seen ('' or '0' for the start).
 * - `onEvent(event)`: every event, `{ id, kind, data, raw }` (see SseParser).
 * - `onState(state, detail)`: 'connecting' | 'open' | 'retrying' (detail: { delayMs, error })
 *   | 'ended' (the stream finished after a stop event, or `close()`) | 'failed' (detail: the
 *   ApiError: the token or resource is gone, no retry).
 * - `stopKinds`: event kinds after which the stream is not reopened (['closed']).
 * - `isFatal(err, attempt)`: whether an error ends the stream for good (default: the token
 *   or the resource is gone: UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, ...).
 * - `resumeWithQuery`: also send `?after=<id>` (for servers behind proxies that drop headers).
 *
 * Returns `{ close(), reconnectNow(), lastEventId }` (`lastEventId` is a getter).
 */
export function openStream(url, options = {}) {
  const { onEvent = () => {}, onState = () => {}, stopKinds = ['closed'] } = options;
  let lastEventId = options.lastEventId ? String(options.lastEventId) : '';
  let closed = false;
  let stopSeen = false;
  let controller = null;
  let attempt = 0;
  let wakeUp = null;

  const tokenOf = () => (typeof options.token === 'function' ? options.token() : options.token);

  async function connectOnce() {
    controller = new AbortController();
    const ctl = controller;
    let idleTimer = null;
    let stopTimer = null;
    const touch = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => ctl.abort(), STREAM_IDLE_MS);
    };
    const headers = { Accept: 'text/event-stream' };
    const token = tokenOf();
    if (token) headers.Authorization = `Bearer ${token}`;
    let target = url;
    if (lastEventId && lastEventId !== '0') {
      headers['Last-Event-ID'] = lastEventId;
      if (options.resumeWithQuery) {
        target += (url.includes('?') ? '&' : '?') + `after=${encodeURIComponent(lastEventId)}`;
      }
    }
    touch();
    try {
      let response;
      try {
        response = await fetch(target, {
          headers,
          signal: ctl.signal,
          cache: 'no-store',
          credentials: 'omit',
        });
      } catch (err) {
        throw new ApiError(err && err.message ? err.message : 'network error', 'NETWORK');
      }
      if (!response.ok) throw await errorFromResponse(response);
      if (!response.body) throw new ApiError('the browser cannot read streams', 'UNIMPLEMENTED');
      onState('open');
      let streamError = null;
      const parser = new SseParser(
        (event) => {
          // A status that ended the server's stream: `event: error`, `{"code", "message"}`
          // (the desk's own CommandError events carry `{"error": {...}}` and pass on).
          const d = event.data;
          if (event.kind === 'error' && d && typeof d.code === 'string' && !('error' in d)) {
            streamError = new ApiError(d.message || d.code, d.code);
            return;
          }
          attempt = 0;
          if (event.id && event.id !== '0') lastEventId = event.id;
          if (stopKinds.includes(event.kind)) {
            stopSeen = true;
            clearTimeout(stopTimer);
            stopTimer = setTimeout(() => ctl.abort(), STOP_GRACE_MS);
          }
          try {
            onEvent(event);
          } catch (err) {
            // A page bug must not kill the stream.
            console.error('centralino: event handler failed', err);
          }
        },
        () => {
          attempt = 0;
        },
      );
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (stopSeen || closed) return;
          throw new ApiError(err && err.message ? err.message : 'stream broken', 'NETWORK');
        }
        if (chunk.done) break;
        touch();
        parser.push(decoder.decode(chunk.value, { stream: true }));
      }
      // An event cut off without its closing blank line is dropped, as the SSE rules say.
      if (streamError && !closed) throw streamError;
      if (!stopSeen && !closed) throw new ApiError('the stream ended', 'UNAVAILABLE');
    } finally {
      clearTimeout(idleTimer);
      clearTimeout(stopTimer);
    }
  }

  async function loop() {
    while (!closed && !stopSeen) {
      onState('connecting');
      try {
        await connectOnce();
      } catch (err) {
        if (closed || stopSeen) break;
        const fatal = options.isFatal
          ? options.isFatal(err, attempt)
          : err instanceof ApiError && FATAL_STREAM.has(err.code);
        if (fatal) {
          closed = true;
          onState('failed', err);
          return;
        }
        const delayMs = Math.max(err.retryAfterMs || 0, backoff(attempt));
        attempt += 1;
        onState('retrying', { delayMs, error: err });
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          wakeUp = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wakeUp = null;
      }
    }
    onState('ended');
  }

  loop();

  return {
    /** Stops the stream for good. */
    close() {
      closed = true;
      if (controller) controller.abort();
      if (wakeUp) wakeUp();
    },
    /** Reconnects at once (e.g. when the browser comes back online). */
    reconnectNow() {
      attempt = 0;
      if (wakeUp) wakeUp();
    },
    get lastEventId() {
      return lastEventId;
    },
  };
}

/**
 * The oneof case of a proto3 JSON message: the first of `kinds` (camelCase names) present
 * in `message`, as `[kind, payload]`; `[fallback, {}]` when none is.
 */
export function oneofCase(message, kinds, fallback = '') {
  if (message && typeof message === 'object') {
    for (const kind of kinds) {
      if (Object.prototype.hasOwnProperty.call(message, kind)) return [kind, message[kind] || {}];
    }
  }
  return [fallback, {}];
}

/** 'rating_requested' -> 'ratingRequested'. */
export function camel(snake) {
  return String(snake).replace(/_([a-z])/g, (_, c) => c.toUpperCase());
}
