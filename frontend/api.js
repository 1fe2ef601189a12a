// The GraphQL client: POSTs an operation to /graphql, times it in the browser, and returns
// the data with the server's cache report (extensions.cache) and the x-cache header.
//
// Mutations carry the admin token, and so does the one query that needs it
// (CachePerformance, which puts load on the database). Failures are thrown as ApiError
// with a `kind`:
//   network  the server could not be reached (fetch failed)
//   auth     UNAUTHENTICATED: no token, or a wrong one
//   input    BAD_USER_INPUT: `fields` maps each named field to its message
//   server   any other GraphQL or HTTP error
// Every finished request is announced on `requests` ("request" events) for the log and
// the connection banner.
//
// Operations go out as persisted queries (APQ): the SHA-256 of the operation's text
// (frontend/persisted.js, computed at build time, not in the browser) instead of the
// text. A server that does not know the hash yet answers PERSISTED_QUERY_NOT_FOUND and
// gets the text with it, once; a server with persisted queries turned off
// (PERSISTED_QUERY_NOT_SUPPORTED) gets plain requests from then on. Everything goes by
// POST, whose answers browsers never cache.
import * as operations from './operations.js';
import { HASHES } from './persisted.js';
import { getToken } from './token.js';

export const requests = new EventTarget();

export class ApiError extends Error {
  constructor(kind, message, { code = null, fields = {} } = {}) {
    super(message);
    this.name = 'ApiError';
    this.kind = kind;
    this.code = code;
    this.fields = fields;
  }
}

const OPERATION = /\b(query|mutation)\s+(\w+)/;

// Queries that need the admin token.
const ADMIN_QUERIES = new Set(['CachePerformance']);

// The persisted query hash of each operation's text.
const HASH_OF = new Map(Object.entries(operations).map(([name, text]) => [text, HASHES[name]]));
let persisted = true;

/**
 * POSTs one GraphQL request, by hash first when the operation has one; resolves to the
 * response and its parsed body (null when it is not JSON).
 */
async function send(operation, variables, operationName, headers) {
  const post = async (body) => {
    const response = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify(body) });
    return { response, body: await response.json().catch(() => null) };
  };
  const hash = persisted ? HASH_OF.get(operation) : undefined;
  if (!hash) return post({ query: operation, variables, operationName });
  const extensions = { persistedQuery: { version: 1, sha256Hash: hash } };
  const first = await post({ extensions, variables, operationName });
  // The code decides, not the status (200 for application/json, 404 or 400 otherwise).
  const code = first.body?.errors?.[0]?.extensions?.code;
  if (code === 'PERSISTED_QUERY_NOT_FOUND') return post({ query: operation, extensions, variables, operationName });
  if (code === 'PERSISTED_QUERY_NOT_SUPPORTED') {
    persisted = false;
    return post({ query: operation, variables, operationName });
  }
  return first;
}

/**
 * Sends one operation of operations.js.
 * @param {string} operation  the operation (and its fragments)
 * @param {object} [variables]
 * @param {{background?: boolean}} [options]  background requests (stats polling) stay out of the log
 * @returns {Promise<{data: object, cache: object|null, xCache: string, ms: number}>}
 */
export async function request(operation, variables = {}, { background = false } = {}) {
  const [, type, operationName] = operation.match(OPERATION);
  const headers = { 'content-type': 'application/json', accept: 'application/json' };
  const token = getToken();
  const admin = type === 'mutation' || ADMIN_QUERIES.has(operationName);
  if (admin && token) headers.authorization = `Bearer ${token}`;

  const started = performance.now();
  const report = (detail) =>
    requests.dispatchEvent(new CustomEvent('request', { detail: { operationName, type, background, ...detail } }));

  let response;
  let body;
  try {
    ({ response, body } = await send(operation, variables, operationName, headers));
  } catch {
    report({ ok: false, kind: 'network', ms: performance.now() - started });
    throw new ApiError('network', 'The larder server cannot be reached.');
  }
  const ms = performance.now() - started;
  const cache = body?.extensions?.cache ?? null;
  const xCache = response.headers.get('x-cache') ?? '';
  const error = toError(response, body, admin && Boolean(token));
  report({ ok: !error, kind: error?.kind, ms, source: cache?.source ?? '', xCache });
  if (error) throw error;
  return { data: body.data, cache, xCache, ms };
}

function toError(response, body, sentToken) {
  const errors = body?.errors ?? [];
  if (!body || (!response.ok && errors.length === 0)) {
    return new ApiError('server', `The server answered HTTP ${response.status}.`);
  }
  if (errors.length === 0) return null;
  const code = errors[0].extensions?.code ?? null;
  if (errors.some((e) => e.extensions?.code === 'UNAUTHENTICATED')) {
    const message = sentToken
      ? 'The admin token was rejected: enter the one this server printed at start.'
      : 'This needs the admin token (the server prints it at start).';
    return new ApiError('auth', message, { code: 'UNAUTHENTICATED' });
  }
  if (code === 'BAD_USER_INPUT') {
    const fields = {};
    for (const e of errors) fields[e.extensions?.field ?? 'input'] ??= e.message;
    return new ApiError('input', errors[0].message, { code, fields });
  }
  return new ApiError('server', errors.map((e) => e.message).join('; '), { code });
}
