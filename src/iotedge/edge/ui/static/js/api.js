// Calls to the edge's JSON API with the key from sessionStorage (never a URL or a cookie).
const KEY = "iotedge.key";

export class ApiError extends Error {
  constructor(kind, status, retryAfter = null) {
    super(`${kind} (${status})`);
    this.kind = kind; // "network", "auth", "rate", "notfound", "server", "bad"
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export async function api(path, params = {}, key = session.key()) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, String(value));
  }
  let response;
  try {
    response = await fetch(url, { headers: { "x-api-key": key ?? "" }, cache: "no-store", credentials: "omit" });
  } catch {
    throw new ApiError("network", 0);
  }
  if (response.ok) return response.json();
  const kind = { 401: "auth", 403: "auth", 404: "notfound", 429: "rate" }[response.status]
    ?? (response.status >= 500 ? "server" : "bad");
  throw new ApiError(kind, response.status, response.headers.get("retry-after"));
}

export function segment(id) {
  return encodeURIComponent(id);
}
