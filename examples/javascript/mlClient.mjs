// ml-service client for Node.js 18+ (built-in fetch, no dependencies).
//
//   node mlClient.mjs http://localhost:5000 USER_ID OTHER_USER_ID
//
// Copy MlServiceClient into your code; main() shows a single call, the next page, a batch
// call, a filtered row, "more like this", "because you watched" and error handling. Only 503
// is retried (with backoff, honouring Retry-After).
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

  /**
   * One page of recommendations for one user. A row's filters and exclusions are options too
   * (see ROW): mediaType and genres (arrays: a media passes with any of them), releaseYearMin,
   * releaseYearMax, exclude (up to 200 media ids), diversity (0-1); and because: a media the
   * user liked or watched, for the row "Because you watched" it.
   */
  recommendations(userId, { limit = 10, offset = 0, ...row } = {}) {
    const query = searchParams({ limit, offset, ...apiNames(row) });
    return this.#call("GET", `/api/recommendations/${encodeURIComponent(userId)}?${query}`);
  }

  /** One page for each of 1-50 users: { results: { userId: page }, total_users }; the row options but because. */
  batch(userIds, { limit = 10, offset = 0, ...row } = {}) {
    return this.#call("POST", "/api/recommendations/batch", { user_ids: userIds, limit, offset, ...apiNames(row) });
  }

  /** "More like this": { media, similar: [items], ... }; with userId, ordered for that user, without what they saw. */
  similar(mediaId, { limit = 10, offset = 0, userId } = {}) {
    const query = searchParams({ limit, offset, user_id: userId });
    return this.#call("GET", `/api/media/${encodeURIComponent(mediaId)}/similar?${query}`);
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

/** The row options and their names in the API. */
const ROW = {
  mediaType: "media_type", genres: "genres", releaseYearMin: "release_year_min", releaseYearMax: "release_year_max",
  exclude: "exclude", diversity: "diversity", because: "because",
};

/** The row options under their API names; undefined and null are left out. */
function apiNames(row) {
  return Object.fromEntries(Object.entries(row).filter(([, value]) => value != null).map(([option, value]) => {
    if (!Object.hasOwn(ROW, option)) throw new TypeError(`unknown option: ${option}`);
    return [ROW[option], value];
  }));
}

/** A query string: an array repeats its name (genres=Comedy&genres=Romance); undefined and null are left out. */
function searchParams(params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    for (const one of [].concat(value)) query.append(name, String(one));
  }
  return query;
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
  const experiment = page.experiment; // { name, variant } while an A/B experiment runs: log it beside your metrics
  const variant = experiment ? `${experiment.name}/${experiment.variant}` : "none";
  console.log(`single ${page.user_id} count=${page.count} first=${page.recommendations[0].media_id} experiment=${variant}`);

  const next = await client.recommendations(userId, { limit: 5, offset: 5 }); // the next page: offset += limit
  console.log(`page offset=${next.offset} count=${next.count} first=${next.recommendations[0].media_id}`);

  const batch = await client.batch([userId, otherUserId], { limit: 5 }); // results are keyed by canonicalId(user id)
  const counts = [userId, otherUserId].map((id) => `${id}:${batch.results[canonicalId(id)].count}`).join(" ");
  console.log(`batch total_users=${batch.total_users} ${counts}`);

  const shown = page.recommendations.map((item) => item.media_id); // what the page shows already
  const row = { genres: ["Comedy", "Romance"], releaseYearMin: 1990, exclude: shown, diversity: 0.5 };
  const comedies = await client.recommendations(userId, { limit: 5, ...row }); // a row: "Comedies since 1990"
  console.log(`row count=${comedies.count} first=${comedies.recommendations[0].media_id}`);

  const rows = await client.batch([userId, otherUserId], { limit: 5, ...row }); // the same row for several users
  const firsts = Object.entries(rows.results).map(([id, result]) => `${id}:${result.recommendations[0].media_id}`).join(" ");
  console.log(`batch row ${firsts}`);

  const seed = page.recommendations[0]; // "More like this" on its title page, ordered for this user
  const like = await client.similar(seed.media_id, { limit: 5, userId });
  console.log(`similar "${like.media.title}" count=${like.count} first=${like.similar[0].media_id}`);

  const watched = page.recommendations.flatMap((item) => item.because)[0]; // { media_id, title }
  const because = await client.recommendations(userId, { limit: 5, because: watched.media_id }); // "Because you watched <title>"
  console.log(`because "${watched.title}" count=${because.count} first=${because.recommendations[0].media_id}`);

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
