// ml-service client for Node.js 18+ (built-in fetch, no dependencies).
//
//   node mlClient.mjs http://localhost:5000 USER_ID OTHER_USER_ID
//
// Copy MlServiceClient into your code; main() shows a single call, the next page, a batch
// call and error handling. Only 503 is retried (with backoff, honouring Retry-After).
import { randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";

export class MlServiceError extends Error {
  constructor(status, code, message, requestId) {
    super(`${status} ${code}: ${message} (request id ${requestId})`);
    Object.assign(this, { status, code, requestId });
  }
}

export class MlServiceClient {
  constructor(baseUrl, { timeoutMs = 2000, maxRetries = 3, backoffMs = 200 } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    Object.assign(this, { timeoutMs, maxRetries, backoffMs });
  }

  /** One page of recommendations for one user. */
  recommendations(userId, { limit = 10, offset = 0 } = {}) {
    const query = new URLSearchParams({ limit: String(limit), offset: String(offset) });
    return this.#call("GET", `/api/recommendations/${encodeURIComponent(userId)}?${query}`);
  }

  /** One page for each of 1-50 users: { results: { userId: page }, total_users }. */
  batch(userIds, { limit = 10, offset = 0 } = {}) {
    return this.#call("POST", "/api/recommendations/batch", { user_ids: userIds, limit, offset });
  }

  async #call(method, path, body) {
    const requestId = randomUUID(); // the same id on every retry
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(this.baseUrl + path, {
        method,
        headers: { "X-Request-ID": requestId, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(this.timeoutMs), // rejects with a TimeoutError
      });
      if (response.status === 503 && attempt < this.maxRetries) {
        await response.body?.cancel();
        const retryAfterMs = Number(response.headers.get("Retry-After") ?? 0) * 1000;
        await new Promise((resolve) => setTimeout(resolve, Math.min(Math.max(retryAfterMs, this.backoffMs * 2 ** attempt), 10000)));
        continue;
      }
      if (response.ok) return response.json();
      let error = { code: "http_error", message: response.statusText };
      try {
        error = (await response.json()).error ?? error;
      } catch { /* not JSON */ }
      throw new MlServiceError(response.status, error.code, error.message, response.headers.get("X-Request-ID"));
    }
  }
}

/** A user id as the service writes it (lower-case, with dashes): batch results are keyed by it. */
export function canonicalId(userId) {
  const hex = String(userId).trim().toLowerCase().replaceAll("-", "");
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new TypeError(`not a UUID: ${userId}`);
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
}

async function main(baseUrl, userId, otherUserId) {
  const client = new MlServiceClient(baseUrl);

  const page = await client.recommendations(userId, { limit: 5 });
  console.log(`single ${page.user_id} count=${page.count} first=${page.recommendations[0].media_id}`);

  const next = await client.recommendations(userId, { limit: 5, offset: 5 }); // the next page: offset += limit
  console.log(`page offset=${next.offset} count=${next.count} first=${next.recommendations[0].media_id}`);

  const batch = await client.batch([userId, otherUserId], { limit: 5 }); // results are keyed by canonicalId(user id)
  const counts = [userId, otherUserId].map((id) => `${id}:${batch.results[canonicalId(id)].count}`).join(" ");
  console.log(`batch total_users=${batch.total_users} ${counts}`);

  try {
    await client.recommendations("not-a-user-id");
  } catch (error) {
    if (!(error instanceof MlServiceError)) throw error;
    console.log(`error ${error.status} ${error.code}`); // 400: fix the request, do not retry
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) { // run, not imported
  const args = process.argv.slice(2);
  let ids;
  try {
    if (args.length !== 3) throw new TypeError("three arguments expected");
    ids = args.slice(1).map(canonicalId);
  } catch {
    console.error("usage: node mlClient.mjs BASE_URL USER_ID OTHER_USER_ID (user ids are UUIDs, in any case)");
    process.exit(2);
  }
  await main(args[0], ...ids);
}
