// The API client of the dashboard: every call carries the key as the X-API-Key header,
// never in a URL. Failures become ApiError with the server's machine-readable code.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status; // 0: the API could not be reached
    this.code = code;
  }
}

export class Api {
  constructor(key, onUnauthorized = () => {}) {
    this.key = key;
    this.onUnauthorized = onUnauthorized;
  }

  url(path, params = {}) {
    const url = new URL(path, location.origin);
    for (const [name, value] of Object.entries(params)) {
      if (value === undefined || value === null || value === "") continue;
      for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(name, v);
    }
    return url.pathname + url.search;
  }

  async request(method, path, { params, body } = {}) {
    const headers = { "X-API-Key": this.key };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(this.url(path, params), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      throw new ApiError(0, "API_DOWN", `Cannot reach the API at ${location.origin}. Is turret-stream running?`);
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const code = data?.code || `HTTP_${response.status}`;
      const message = data?.error || `The API answered ${response.status}`;
      const error = new ApiError(response.status, code, message);
      if (response.status === 401) this.onUnauthorized(error);
      throw error;
    }
    return data;
  }

  get(path, params) {
    return this.request("GET", path, { params });
  }

  put(path, body) {
    return this.request("PUT", path, { body });
  }
}
