// ml-service client for Java 17 backends: java.net.http.HttpClient, no third-party jars.
//
//   javac -d out MlServiceClient.java && java -cp out MlServiceClient http://localhost:5000 USER_ID OTHER_USER_ID
//
// Copy the class into your code (with your JSON library in place of the small Json parser at
// the end); main() shows a single call, the next page, a batch call, a filtered row, "more like
// this", "because you watched" and error handling. Only 503 is retried (with backoff, honouring
// Retry-After).

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.stream.Collectors;

public final class MlServiceClient {

    /** A JSON error answer: {"error": {"code", "message", "details"?}}. */
    public static final class MlServiceException extends Exception {
        private static final long serialVersionUID = 1L;
        public final int status;
        public final String code;
        public final String requestId;

        MlServiceException(int status, String code, String message, String requestId) {
            super(status + " " + code + ": " + message + " (request id " + requestId + ")");
            this.status = status;
            this.code = code;
            this.requestId = requestId;
        }
    }

    private final String baseUrl;
    private final HttpClient http;
    private final Duration timeout;
    private final int maxRetries;
    private final long backoffMillis;

    public MlServiceClient(String baseUrl, Duration timeout, int maxRetries, long backoffMillis) {
        this.baseUrl = baseUrl.replaceAll("/+$", "");
        this.timeout = timeout;
        this.maxRetries = maxRetries;
        this.backoffMillis = backoffMillis;
        this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(3)).build(); // reuse one per application
    }

    public MlServiceClient(String baseUrl) {
        this(baseUrl, Duration.ofSeconds(2), 3, 200);
    }

    /**
     * A row's filters and exclusions, all optional: only media of these types, with any of these genres, released in
     * these years, never the excluded ones; diversity (0-1) re-ranks for genre variety; because (single call only)
     * makes it the row "Because you watched" that media of the user's history.
     */
    public static final class Row {
        private final Map<String, Object> fields = new LinkedHashMap<>(); // API name: a List<String>, String or Number

        public Row mediaTypes(String... mediaTypes) { return with("media_type", List.of(mediaTypes)); }
        public Row genres(String... genres) { return with("genres", List.of(genres)); }
        public Row releaseYearMin(int year) { return with("release_year_min", year); }
        public Row releaseYearMax(int year) { return with("release_year_max", year); }
        public Row exclude(List<String> mediaIds) { return with("exclude", List.copyOf(mediaIds)); }
        public Row diversity(double diversity) { return with("diversity", diversity); }
        public Row because(String mediaId) { return with("because", mediaId); }

        private Row with(String name, Object value) {
            fields.put(name, value);
            return this;
        }

        /** "&name=value" for each value: a list repeats its name (genres=Comedy&genres=Romance). */
        String query() {
            StringBuilder query = new StringBuilder();
            fields.forEach((name, value) -> {
                for (Object one : value instanceof List<?> list ? list : List.of(value)) query.append(param(name, one));
            });
            return query.toString();
        }

        /** ", \"name\": value" for each field, to end a JSON body. */
        String jsonFields() {
            StringBuilder json = new StringBuilder();
            fields.forEach((name, value) -> json.append(", ").append(Json.write(name)).append(": ").append(Json.write(value)));
            return json.toString();
        }
    }

    /** "&name=value", URL-encoded. */
    private static String param(String name, Object value) {
        return "&" + name + "=" + URLEncoder.encode(String.valueOf(value), StandardCharsets.UTF_8);
    }

    /** One page of recommendations for one user. */
    public Map<String, Object> recommendations(String userId, int limit, int offset)
            throws IOException, InterruptedException, MlServiceException {
        return recommendations(userId, limit, offset, new Row());
    }

    /** One page of one user's row: recommendations that pass the row's filters, or "because you watched". */
    public Map<String, Object> recommendations(String userId, int limit, int offset, Row row)
            throws IOException, InterruptedException, MlServiceException {
        String path = "/api/recommendations/" + URLEncoder.encode(userId, StandardCharsets.UTF_8)
                + "?limit=" + limit + "&offset=" + offset + row.query();
        return call("GET", path, null);
    }

    /** One page for each of 1-50 users: {"results": {userId: page}, "total_users": n}. */
    public Map<String, Object> batch(List<UUID> userIds, int limit, int offset)
            throws IOException, InterruptedException, MlServiceException {
        return batch(userIds, limit, offset, new Row());
    }

    /** One page of the same row (without because) for each of 1-50 users. */
    public Map<String, Object> batch(List<UUID> userIds, int limit, int offset, Row row)
            throws IOException, InterruptedException, MlServiceException {
        String ids = userIds.stream().map(id -> "\"" + id + "\"").collect(Collectors.joining(","));
        String body = "{\"user_ids\": [" + ids + "], \"limit\": " + limit + ", \"offset\": " + offset + row.jsonFields() + "}";
        return call("POST", "/api/recommendations/batch", body);
    }

    /**
     * "More like this": {"media": the media, "similar": [items], ...}; with a userId (null for none), ordered for that
     * user and without what they interacted with. A 404 not_found for a media the catalog does not have.
     */
    public Map<String, Object> similar(String mediaId, int limit, int offset, String userId)
            throws IOException, InterruptedException, MlServiceException {
        String path = "/api/media/" + URLEncoder.encode(mediaId, StandardCharsets.UTF_8) + "/similar?limit=" + limit
                + "&offset=" + offset + (userId == null ? "" : param("user_id", userId));
        return call("GET", path, null);
    }

    @SuppressWarnings("unchecked")
    private Map<String, Object> call(String method, String path, String jsonBody)
            throws IOException, InterruptedException, MlServiceException {
        String requestId = UUID.randomUUID().toString(); // the same id on every retry
        for (int attempt = 0; ; attempt++) {
            HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(baseUrl + path))
                    .timeout(timeout) // throws HttpTimeoutException when the answer takes longer
                    .header("X-Request-ID", requestId)
                    .header("Accept", "application/json");
            if (jsonBody != null) {
                request.header("Content-Type", "application/json")
                        .method(method, HttpRequest.BodyPublishers.ofString(jsonBody));
            } else {
                request.method(method, HttpRequest.BodyPublishers.noBody());
            }
            HttpResponse<String> response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
            int status = response.statusCode();
            if (status == 503 && attempt < maxRetries) {
                long retryAfter = response.headers().firstValue("Retry-After").map(Long::parseLong).orElse(0L) * 1000;
                Thread.sleep(Math.min(Math.max(retryAfter, backoffMillis << attempt), 10_000));
                continue;
            }
            if (status >= 200 && status < 300) {
                return (Map<String, Object>) Json.parse(response.body());
            }
            String code = "http_error";
            String message = response.body();
            try {
                Map<String, Object> error = (Map<String, Object>) ((Map<String, Object>) Json.parse(response.body())).get("error");
                code = (String) error.get("code");
                message = (String) error.get("message");
            } catch (RuntimeException notJson) {
                // keep the raw body
            }
            throw new MlServiceException(status, code, message, response.headers().firstValue("X-Request-ID").orElse(null));
        }
    }

    @SuppressWarnings("unchecked")
    private static List<Map<String, Object>> items(Map<String, Object> page, String key) {
        return (List<Map<String, Object>>) page.get(key);
    }

    private static String firstMediaId(Map<String, Object> page) {
        return (String) items(page, "recommendations").get(0).get("media_id");
    }

    /** A user id as the service writes it (lower-case, with dashes): batch results are keyed by it. */
    public static String canonicalId(String userId) {
        return UUID.fromString(userId.trim()).toString(); // throws IllegalArgumentException when not a UUID
    }

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        String userId;
        String otherUserId;
        try {
            if (args.length != 3) throw new IllegalArgumentException("three arguments expected");
            userId = canonicalId(args[1]);
            otherUserId = canonicalId(args[2]);
        } catch (IllegalArgumentException badArguments) {
            System.err.println("usage: java MlServiceClient BASE_URL USER_ID OTHER_USER_ID (user ids are UUIDs, in any case)");
            System.exit(2);
            return;
        }
        MlServiceClient client = new MlServiceClient(args[0]);

        Map<String, Object> page = client.recommendations(userId, 5, 0);
        @SuppressWarnings("unchecked") // {name, variant} while an A/B experiment runs: log it beside your metrics
        Map<String, Object> experiment = (Map<String, Object>) page.get("experiment");
        String variant = experiment == null ? "none" : experiment.get("name") + "/" + experiment.get("variant");
        System.out.println("single " + page.get("user_id") + " count=" + Json.integer(page.get("count"))
                + " first=" + firstMediaId(page) + " experiment=" + variant);

        Map<String, Object> next = client.recommendations(userId, 5, 5); // the next page: offset += limit
        System.out.println("page offset=" + Json.integer(next.get("offset")) + " count=" + Json.integer(next.get("count"))
                + " first=" + firstMediaId(next));

        Map<String, Object> batch = client.batch(List.of(UUID.fromString(userId), UUID.fromString(otherUserId)), 5, 0);
        Map<String, Object> results = (Map<String, Object>) batch.get("results");
        StringBuilder counts = new StringBuilder();
        for (String id : List.of(userId, otherUserId)) { // results are keyed by canonicalId(user id)
            counts.append(' ').append(id).append(':').append(Json.integer(((Map<String, Object>) results.get(canonicalId(id))).get("count")));
        }
        System.out.println("batch total_users=" + Json.integer(batch.get("total_users")) + counts);

        List<String> shown = items(page, "recommendations").stream() // what the page shows already
                .map(item -> (String) item.get("media_id")).toList();
        Row row = new Row().genres("Comedy", "Romance").releaseYearMin(1990).exclude(shown).diversity(0.5);
        Map<String, Object> comedies = client.recommendations(userId, 5, 0, row); // a row: "Comedies since 1990"
        System.out.println("row count=" + Json.integer(comedies.get("count")) + " first=" + firstMediaId(comedies));

        Map<String, Object> rows = client.batch(List.of(UUID.fromString(userId), UUID.fromString(otherUserId)), 5, 0, row);
        StringBuilder firsts = new StringBuilder(); // the same row for several users
        ((Map<String, Object>) rows.get("results")).forEach((id, result) ->
                firsts.append(' ').append(id).append(':').append(firstMediaId((Map<String, Object>) result)));
        System.out.println("batch row" + firsts);

        Map<String, Object> seed = items(page, "recommendations").get(0); // "More like this" on its title page
        Map<String, Object> like = client.similar((String) seed.get("media_id"), 5, 0, userId); // ordered for this user
        System.out.println("similar \"" + ((Map<String, Object>) like.get("media")).get("title") + "\" count="
                + Json.integer(like.get("count")) + " first=" + items(like, "similar").get(0).get("media_id"));

        Map<String, Object> watched = items(page, "recommendations").stream() // {media_id, title}
                .flatMap(item -> items(item, "because").stream()).findFirst().orElseThrow();
        Row becauseRow = new Row().because((String) watched.get("media_id")); // "Because you watched <title>"
        Map<String, Object> because = client.recommendations(userId, 5, 0, becauseRow);
        System.out.println("because \"" + watched.get("title") + "\" count=" + Json.integer(because.get("count"))
                + " first=" + firstMediaId(because));

        try {
            client.recommendations("not-a-user-id", 10, 0);
        } catch (MlServiceException error) { // 400: fix the request, do not retry
            System.out.println("error " + error.status + " " + error.code);
        }
    }

    /**
     * A minimal JSON reader (objects, arrays, strings, numbers, booleans, null), and a writer of what requests send
     * (strings, numbers, lists of them), so the example needs no jars.
     */
    static final class Json {
        private final String text;
        private int pos;

        private Json(String text) {
            this.text = text;
        }

        static Object parse(String text) {
            Json json = new Json(text);
            Object value = json.value();
            json.skipSpace();
            if (json.pos != text.length()) throw json.error("trailing characters");
            return value;
        }

        static long integer(Object number) {
            return ((Number) number).longValue();
        }

        /** A string, number or list of them as JSON. */
        static String write(Object value) {
            if (value instanceof List<?> list) return list.stream().map(Json::write).collect(Collectors.joining(", ", "[", "]"));
            if (value instanceof Number) return value.toString();
            StringBuilder out = new StringBuilder("\"");
            for (char c : ((String) value).toCharArray()) {
                if (c == '"' || c == '\\') out.append('\\').append(c);
                else if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
                else out.append(c);
            }
            return out.append('"').toString();
        }

        private Object value() {
            skipSpace();
            if (pos >= text.length()) throw error("unexpected end");
            char c = text.charAt(pos);
            switch (c) {
                case '{': return object();
                case '[': return array();
                case '"': return string();
                case 't': return literal("true", Boolean.TRUE);
                case 'f': return literal("false", Boolean.FALSE);
                case 'n': return literal("null", null);
                default: return number();
            }
        }

        private Map<String, Object> object() {
            Map<String, Object> result = new LinkedHashMap<>();
            pos++;
            skipSpace();
            if (peek() == '}') { pos++; return result; }
            while (true) {
                skipSpace();
                String key = string();
                skipSpace();
                expect(':');
                result.put(key, value());
                skipSpace();
                if (peek() == ',') { pos++; continue; }
                expect('}');
                return result;
            }
        }

        private List<Object> array() {
            List<Object> result = new ArrayList<>();
            pos++;
            skipSpace();
            if (peek() == ']') { pos++; return result; }
            while (true) {
                result.add(value());
                skipSpace();
                if (peek() == ',') { pos++; continue; }
                expect(']');
                return result;
            }
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                if (pos >= text.length()) throw error("unterminated string");
                char c = text.charAt(pos++);
                if (c == '"') return out.toString();
                if (c != '\\') { out.append(c); continue; }
                char e = text.charAt(pos++);
                switch (e) {
                    case 'n': out.append('\n'); break;
                    case 't': out.append('\t'); break;
                    case 'r': out.append('\r'); break;
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'u': out.append((char) Integer.parseInt(text.substring(pos, pos + 4), 16)); pos += 4; break;
                    default: out.append(e); // " \ /
                }
            }
        }

        private Number number() {
            int start = pos;
            while (pos < text.length() && "+-0123456789.eE".indexOf(text.charAt(pos)) >= 0) pos++;
            String n = text.substring(start, pos);
            if (n.isEmpty()) throw error("unexpected character");
            return n.matches("-?\\d+") ? (Number) Long.valueOf(n) : (Number) Double.valueOf(n);
        }

        private Object literal(String word, Object value) {
            if (!text.startsWith(word, pos)) throw error("unexpected character");
            pos += word.length();
            return value;
        }

        private void expect(char c) {
            if (peek() != c) throw error("expected '" + c + "'");
            pos++;
        }

        private char peek() {
            return pos < text.length() ? text.charAt(pos) : '\0';
        }

        private void skipSpace() {
            while (pos < text.length() && Character.isWhitespace(text.charAt(pos))) pos++;
        }

        private IllegalArgumentException error(String what) {
            return new IllegalArgumentException("invalid JSON at " + pos + ": " + what);
        }
    }
}
