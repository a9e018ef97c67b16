// The admin API (/v1) with the token from session storage as a Bearer header.
// The token is never put in a URL, in localStorage or in a cookie.

const KEY = 'switchyard.token';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function authHeaders(accept = 'application/json') {
  return { Authorization: `Bearer ${token.get() || ''}`, Accept: accept };
}

/** GET (or another method) a JSON answer; throws ApiError with the API's message. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  if (!token.get()) throw new ApiError(401, 'unauthorized', 'Sign in with a token.');
  const headers = authHeaders();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    throw new ApiError(res.status, data && data.code, (data && data.message) || `${res.status} ${res.statusText}`);
  }
  return data;
}

export const enc = encodeURIComponent;
