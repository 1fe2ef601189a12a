// The GraphQL client: POSTs an operation to /graphql, times it in the browser, and returns
// the data with the server's cache report (extensions.cache) and the x-cache header.
//
// Mutations carry the admin token. Failures are thrown as ApiError with a `kind`:
//   network  the server could not be reached (fetch failed)
//   auth     UNAUTHENTICATED: no token, or a wrong one
//   input    BAD_USER_INPUT: `fields` maps each named field to its message
//   server   any other GraphQL or HTTP error
// Every finished request is announced on `requests` ("request" events) for the log and
// the connection banner.
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
  if (type === 'mutation' && token) headers.authorization = `Bearer ${token}`;

  const started = performance.now();
  const report = (detail) =>
    requests.dispatchEvent(new CustomEvent('request', { detail: { operationName, type, background, ...detail } }));

  let response;
  let body;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers,
      body: JSON.stringify({ query: operation, variables, operationName }),
    });
  } catch {
    report({ ok: false, kind: 'network', ms: performance.now() - started });
    throw new ApiError('network', 'The larder server cannot be reached.');
  }
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const ms = performance.now() - started;
  const cache = body?.extensions?.cache ?? null;
  const xCache = response.headers.get('x-cache') ?? '';
  const error = toError(response, body, type === 'mutation' && Boolean(token));
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
      ? 'The admin token was rejected: enter the one this server logged at start.'
      : 'This change needs the admin token (the server logs it at start).';
    return new ApiError('auth', message, { code: 'UNAUTHENTICATED' });
  }
  if (code === 'BAD_USER_INPUT') {
    const fields = {};
    for (const e of errors) fields[e.extensions?.field ?? 'input'] ??= e.message;
    return new ApiError('input', errors[0].message, { code, fields });
  }
  return new ApiError('server', errors.map((e) => e.message).join('; '), { code });
}
