// The REST API: one `request` that sends the CSRF token, turns error answers into
// ApiError with the server's message, and reports an expired session to whoever listens.

export const session = {
  user: null,      // the user name, or null when the server runs open (no users)
  role: null,      // "admin" | "viewer"
  csrf: null,      // the CSRF token of a cookie session
  known: false,    // /auth/me has answered
  expired: false,  // a request answered 401: the sign-in page says the session ended
  get isAdmin() { return this.role === 'admin'; },
  get open() { return this.known && !this.user; },
};

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};
/** Called with no argument when any request answers 401 (the session ended). */
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

/** Headers every changing request needs. */
export function writeHeaders(extra = {}) {
  const headers = { ...extra };
  if (session.csrf) headers['X-CSRF-Token'] = session.csrf;
  return headers;
}

/**
 * Sends a request; answers the parsed JSON (or null for an empty body).
 * Options: json (a body to send as JSON), body, headers, signal, quiet401.
 */
export async function request(method, path, opts = {}) {
  const headers = method === 'GET' ? { ...opts.headers } : writeHeaders(opts.headers);
  let body = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['Content-Type'] = 'application/json';
  }
  headers.Accept = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method, headers, body, signal: opts.signal, credentials: 'same-origin',
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'Cannot reach the server. Check the network connection and try again.');
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && !opts.quiet401) onUnauthorized();
    throw error;
  }
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** The ApiError for a failed answer, with the server's own message when it sent one. */
export async function errorOf(response) {
  let message = '';
  let code;
  try {
    const data = await response.json();
    message = data.Message || data.Details || '';
    code = data.Code;
  } catch { /* not JSON */ }
  return new ApiError(response.status, message || describeStatus(response.status), code);
}

export function describeStatus(status) {
  switch (status) {
    case 0: return 'Cannot reach the server.';
    case 401: return 'Please sign in again: your session has ended.';
    case 403: return 'Your account is not allowed to do this.';
    case 404: return 'Not found: it may have been deleted.';
    case 413: return 'The file is larger than the server accepts.';
    case 429: return 'Too many attempts. Wait a moment and try again.';
    case 503: return 'The server is temporarily unavailable. Try again shortly.';
    default: return status >= 500 ? `The server failed (HTTP ${status}). See the server log.` : `The request failed (HTTP ${status}).`;
  }
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, json, opts = {}) => request('POST', path, { ...opts, json });
export const del = (path, opts) => request('DELETE', path, opts);

/** Asks who is signed in; false when nobody is (401). */
export async function loadSession() {
  try {
    const me = await request('GET', '/auth/me', { quiet401: true });
    Object.assign(session, { user: me.User, role: me.Role, csrf: me.CsrfToken, known: true });
    return true;
  } catch (error) {
    if (error.status === 401) {
      Object.assign(session, { user: null, role: null, csrf: null, known: false });
      return false;
    }
    throw error;
  }
}

export async function login(username, password) {
  const me = await request('POST', '/auth/login', {
    json: { Username: username, Password: password }, quiet401: true,
  });
  Object.assign(session, { user: me.User, role: me.Role, csrf: me.CsrfToken, known: true });
}

export async function logout() {
  try {
    await request('POST', '/auth/logout', { quiet401: true });
  } finally {
    Object.assign(session, { user: null, role: null, csrf: null, known: false });
  }
}

/** Image URLs (the rendering routes). Frames are 0-based. */
export function renderedUrl(instance, frame, { center, width, format = 'jpeg', quality = 90 } = {}) {
  const q = new URLSearchParams();
  if (Number.isFinite(center) && Number.isFinite(width)) {
    q.set('window-center', String(Math.round(center * 100) / 100));
    q.set('window-width', String(Math.max(1, Math.round(width * 100) / 100)));
  }
  q.set('format', format);
  if (format === 'jpeg') q.set('quality', String(quality));
  return `/instances/${instance}/frames/${frame}/rendered?${q}`;
}

export function thumbnailUrl(instance, size = 256) {
  return `/instances/${instance}/rendered?width=${size}&height=${size}`;
}
