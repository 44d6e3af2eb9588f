// Every header and query parameter streamResponse reads, at its edges, through a real
// node:http server and a real Postgres: an edge is answered 200/304 with the right
// entries, or 400 naming the parameter and what it accepts; never a 500.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { streamResponse, type RangeBody } from "../src/http/index.js";
import type { Engine } from "../src/index.js";
import { gate, openEngine } from "./support/engines.js";
import { MAX, request, sseEntries, startServer, streamRoute, type RawResponse, type TestServer } from "./http.support.js";

let engine: Engine;
let server: TestServer;
/** A finished workflow whose stream "s" holds 0, 1, …, 9 at offsets 0…9 (then the close). */
let done: string;
const COUNT = 10;

beforeAll(async () => {
  engine = await openEngine();
  server = await startServer(streamRoute(engine));
  const wf = engine.workflow("ten", async (ctx) => {
    for (let i = 0; i < COUNT; i++) await ctx.writeStream("s", i);
  });
  const handle = await wf.start(undefined, { workflowId: "ten" });
  await handle.getResult();
  done = handle.workflowId;
});

beforeEach(() => {
  server.errors.length = 0;
});

afterAll(async () => {
  await server.close();
});

const path = (workflowId: string, key: string, query = "") =>
  `/streams/${encodeURIComponent(workflowId)}/${encodeURIComponent(key)}${query}`;
const get = (p: string, headers?: Record<string, string | string[]>, method?: string) =>
  request(server.port, p, { headers, method });

/** Entries of `done` from `from` on, as an SSE client sees them. */
const from = (offset: number): [number, unknown][] =>
  Array.from({ length: Math.max(0, COUNT - offset) }, (_, i) => [offset + i, offset + i]);

function expect400(response: RawResponse, parameter: string, accepted: RegExp | string, what: string) {
  expect(response.status, what).toBe(400);
  expect(response.headers["cache-control"], what).toBe("no-store");
  expect(response.headers["content-type"], what).toBe("text/plain; charset=utf-8");
  expect(response.body.startsWith(`${parameter} `), `${what}: ${response.body}`).toBe(true);
  if (typeof accepted === "string") expect(response.body, what).toContain(accepted);
  else expect(response.body, what).toMatch(accepted);
}

const SSE_RANGE = "an integer from 0 to 9007199254740990";
const JSON_RANGE = "an integer from 0 to 9007199254740991";

/** Values that are not a decimal non-negative integer in canonical form (or are too big). */
const MALFORMED = [
  "-1", "+5", "0x10", "1e3", "05", "00", "1.5", "NaN", "Infinity", "-0", "abc",
  "１", "５", "٥", // full-width and Arabic-Indic digits
  String(2 ** 64), "18446744073709551616", "9".repeat(10_000), "1".repeat(17),
  String(MAX + 1), "9007199254740993",
];
/** Percent-encodes every UTF-16 unit as UTF-8 bytes (lone surrogates as their 3-byte form). */
const q = (text: string) => encodeURIComponent(text);

describe("Last-Event-ID and ?lastEventId=", () => {
  it("resumes after n for n in 0 … MAX_SAFE_INTEGER − 1", async () => {
    for (const [value, expected] of [["0", from(1)], ["1", from(2)], ["9", []], ["10", []], [String(MAX - 1), []]] as const) {
      for (const [how, response] of [
        ["header", await get(path(done, "s"), { "last-event-id": value })],
        ["query", await get(path(done, "s", `?lastEventId=${value}`))],
      ] as const) {
        expect(response.status, `${how} ${value}`).toBe(200);
        expect(response.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
        expect(sseEntries(response.body), `${how} ${value}`).toEqual({ entries: expected, closed: true });
      }
    }
  });

  it("answers 400 naming the parameter and its range to MAX_SAFE_INTEGER (n + 1 would not be a safe offset)", async () => {
    // Before: streamResponse passed fromOffset 2^53 to the engine, which refused it after the 200 (or, earlier, with a 500).
    const header = await get(path(done, "s"), { "last-event-id": String(MAX) });
    expect400(header, "Last-Event-ID", SSE_RANGE, "header MAX_SAFE_INTEGER");
    const query = await get(path(done, "s", `?lastEventId=${MAX}`));
    expect400(query, "lastEventId", SSE_RANGE, "query MAX_SAFE_INTEGER");
    expect(server.errors).toEqual([]);
  });

  it("answers 400 to every malformed or too large value, naming the parameter it came in", async () => {
    for (const bad of MALFORMED) {
      // A header value is Latin-1 on the wire: a non-ASCII digit arrives as its UTF-8 bytes.
      const header = await get(path(done, "s"), { "last-event-id": Buffer.from(bad, "utf8").toString("latin1") });
      expect400(header, "Last-Event-ID", SSE_RANGE, `header ${JSON.stringify(bad.slice(0, 30))}`);
      const query = await get(path(done, "s", `?lastEventId=${q(bad)}`));
      // Before: the query parameter's refusal named the header.
      expect400(query, "lastEventId", SSE_RANGE, `query ${JSON.stringify(bad.slice(0, 30))}`);
    }
    expect(server.errors).toEqual([]);
  });

  it("treats surrounding spaces as HTTP does: trimmed from a header, malformed in the query", async () => {
    for (const spaced of [" 5", "5 ", "\t5\t"]) {
      const header = await get(path(done, "s"), { "last-event-id": spaced });
      expect(header.status, `header ${JSON.stringify(spaced)}`).toBe(200);
      expect(sseEntries(header.body).entries).toEqual(from(6));
      expect400(await get(path(done, "s", `?lastEventId=${q(spaced)}`)), "lastEventId", SSE_RANGE, `query ${JSON.stringify(spaced)}`);
    }
    expect400(await get(path(done, "s", "?lastEventId=+5")), "lastEventId", SSE_RANGE, "a + in a query is a space");
  });

  it("treats an empty value as absent: the stream from 0, or the other source", async () => {
    expect(sseEntries((await get(path(done, "s"), { "last-event-id": "" })).body)).toEqual({ entries: from(0), closed: true });
    expect(sseEntries((await get(path(done, "s", "?lastEventId="))).body)).toEqual({ entries: from(0), closed: true });
    const emptyHeader = await get(path(done, "s", "?lastEventId=7"), { "last-event-id": "" });
    expect(sseEntries(emptyHeader.body).entries).toEqual(from(8));
  });

  it("prefers the header, even over a malformed query parameter (an EventSource reconnecting to a ?lastEventId= URL)", async () => {
    const response = await get(path(done, "s", "?lastEventId=nonsense"), { "last-event-id": "8" });
    expect(response.status).toBe(200);
    expect(sseEntries(response.body).entries).toEqual(from(9));
  });

  it("answers 400 to a header or query parameter given twice, even with the same value", async () => {
    for (const values of [["1", "2"], ["3", "3"]]) {
      expect400(await get(path(done, "s"), { "last-event-id": values }), "Last-Event-ID", SSE_RANGE, `header ${values}`);
      const query = await get(path(done, "s", `?lastEventId=${values[0]}&lastEventId=${values[1]}`));
      // Before: the first value was used and the second ignored.
      expect400(query, "lastEventId", "given 2 times", `query ${values}`);
    }
  });

  it("ignores from and to in an event stream, and Last-Event-ID in a JSON range", async () => {
    const sse = await get(path(done, "s", "?from=oops&to=-1"));
    expect(sse.status).toBe(200);
    expect(sseEntries(sse.body).entries).toEqual(from(0));
    const json = await get(path(done, "s", "?format=json&from=2&lastEventId=oops"), { "last-event-id": "oops" });
    expect(json.status).toBe(200);
    expect((JSON.parse(json.body) as RangeBody).next).toBe(COUNT);
  });
});

describe("format", () => {
  it("is an event stream when missing, empty or sse; a range when json", async () => {
    for (const query of ["", "?format=", "?format=sse"]) {
      const response = await get(path(done, "s", query));
      // Before: ?format= (empty) was a 400, while every other empty parameter counts as absent.
      expect(response.status, query).toBe(200);
      expect(response.headers["content-type"], query).toBe("text/event-stream; charset=utf-8");
    }
    const json = await get(path(done, "s", "?format=json"));
    expect(json.status).toBe(200);
    expect(json.headers["content-type"]).toBe("application/json");
  });

  it("answers 400 to any other value, and to format given twice", async () => {
    for (const bad of ["SSE", "JSON", "Json", "xml", " json", "json ", "sse\u0000", "ｊｓｏｎ", "\uD800", "x".repeat(5000)]) {
      expect400(await get(path(done, "s", `?format=${q(bad.replace("\uD800", "\uFFFD"))}`)), "format", '"sse" or "json"', JSON.stringify(bad.slice(0, 20)));
    }
    expect400(await get(path(done, "s", "?format=%ED%A0%80")), "format", '"sse" or "json"', "a lone surrogate's bytes");
    for (const twice of ["?format=json&format=sse", "?format=json&format=json", "?format=sse&format="]) {
      // Before: the first one won.
      expect400(await get(path(done, "s", twice)), "format", "given 2 times", twice);
    }
  });
});

describe("from and to (?format=json)", () => {
  const range = async (query: string) => {
    const response = await get(path(done, "s", `?format=json${query}`));
    expect(response.status, query).toBe(200);
    return JSON.parse(response.body) as RangeBody;
  };
  const entries = (first: number, end: number) =>
    Array.from({ length: Math.max(0, end - first) }, (_, i) => ({ offset: first + i, value: first + i }));

  it("accepts 0 … MAX_SAFE_INTEGER for each, either one missing, and to == from", async () => {
    expect(await range("&from=0&to=1")).toEqual({ entries: entries(0, 1), next: 1, closed: true });
    expect(await range("&from=1")).toEqual({ entries: entries(1, COUNT), next: COUNT, closed: true });
    expect(await range("&to=3")).toEqual({ entries: entries(0, 3), next: 3, closed: true });
    expect(await range("&from=&to=")).toEqual({ entries: entries(0, COUNT), next: COUNT, closed: true });
    expect(await range("&from=4&to=4")).toEqual({ entries: [], next: 4, closed: true });
    expect(await range(`&to=${MAX}`)).toEqual({ entries: entries(0, COUNT), next: COUNT, closed: true });
    expect(await range(`&from=${MAX - 1}`)).toEqual({ entries: [], next: MAX - 1, closed: true });
    expect(await range(`&from=${MAX}`)).toEqual({ entries: [], next: MAX, closed: true });
    expect(await range(`&from=${MAX}&to=${MAX}`)).toEqual({ entries: [], next: MAX, closed: true });
  });

  it("answers 400 to a malformed or too large from or to, naming it and its range", async () => {
    for (const bad of [...MALFORMED, " 5", "5 ", "\t5"]) {
      expect400(await get(path(done, "s", `?format=json&from=${q(bad)}`)), "from", JSON_RANGE, `from ${JSON.stringify(bad.slice(0, 30))}`);
      expect400(await get(path(done, "s", `?format=json&to=${q(bad)}`)), "to", JSON_RANGE, `to ${JSON.stringify(bad.slice(0, 30))}`);
    }
    expect(server.errors).toEqual([]);
  });

  it("answers 400 to to < from, and to from or to given twice", async () => {
    expect400(await get(path(done, "s", "?format=json&from=3&to=2")), "to", "must not be below from (3)", "to < from");
    expect400(await get(path(done, "s", `?format=json&from=${MAX}&to=0`)), "to", `must not be below from (${MAX})`, "to 0 < from MAX");
    expect400(await get(path(done, "s", "?format=json&from=1&from=2")), "from", "given 2 times", "from twice");
    expect400(await get(path(done, "s", "?format=json&to=1&to=1")), "to", "given 2 times", "to twice");
  });
});

describe("If-None-Match (a closed stream's range)", () => {
  it("answers 304 to the ETag, its weak form, *, or a list holding one; 200 to anything else", async () => {
    const first = await get(path(done, "s", "?format=json&from=2&to=5"));
    const etag = first.headers.etag as string;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    for (const tag of [etag, `W/${etag}`, "*", `"x", ${etag}`, `"x",${etag}`, ` ${etag} `]) {
      const response = await get(path(done, "s", "?format=json&from=2&to=5"), { "if-none-match": tag });
      expect(response.status, tag).toBe(304);
      expect(response.body).toBe("");
      expect(response.headers.etag).toBe(etag);
    }
    // Two header lines are one list.
    expect((await get(path(done, "s", "?format=json&from=2&to=5"), { "if-none-match": ['"x"', etag] })).status).toBe(304);
    for (const tag of ["", '"x"', etag.slice(1, -1), `${etag}x`, `"${"a".repeat(10_000)}"`, ",,,", "W/", '"', "\u00ff", "w/" + etag]) {
      const response = await get(path(done, "s", "?format=json&from=2&to=5"), { "if-none-match": tag });
      expect(response.status, tag.slice(0, 30)).toBe(200);
      expect(JSON.parse(response.body)).toMatchObject({ next: 5, closed: true });
    }
  });

  it("is ignored while the stream is open (no ETag yet), and by the event stream", async () => {
    const release = gate();
    const wf = engine.workflow("open-inm", async (ctx) => {
      await ctx.writeStream("s", "x");
      await release.promise;
    });
    const handle = await wf.start();
    for await (const entry of engine.readStreamEntries(handle.workflowId, "s")) if (entry.offset === 0) break;
    const open = await get(path(handle.workflowId, "s", "?format=json"), { "if-none-match": "*" });
    expect(open.status).toBe(200);
    expect(open.headers["cache-control"]).toBe("no-store");
    release.open();
    await handle.getResult();
    const sse = await get(path(done, "s"), { "if-none-match": "*" });
    expect(sse.status).toBe(200);
    expect(sseEntries(sse.body).entries).toEqual(from(0));
  });
});

describe("methods", () => {
  it("answers HEAD with the GET's status and headers and no body, and frees its reader", async () => {
    const sse = await get(path(done, "s"), {}, "HEAD");
    expect(sse.status).toBe(200);
    expect(sse.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    expect(sse.body).toBe("");
    const json = await get(path(done, "s", "?format=json"), {}, "HEAD");
    expect(json.status).toBe(200);
    expect(json.headers.etag).toMatch(/^"/);
    const cached = await get(path(done, "s", "?format=json"), { "if-none-match": json.headers.etag as string }, "HEAD");
    expect(cached.status).toBe(304);
    expect((await get(path(done, "s", "?lastEventId=x"), {}, "HEAD")).status).toBe(400);
    expect((await get(path("nobody", "s"), {}, "HEAD")).status).toBe(404);
    expect(engine.readerCount).toBe(0);
  });

  it("answers 405 with Allow: GET, HEAD to any other method, before reading anything", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      const response = await request(server.port, path(done, "s"), { method, body: method === "OPTIONS" ? undefined : "{}" });
      // Before: a POST (or any method) was served the stream like a GET.
      expect(response.status, method).toBe(405);
      expect(response.headers.allow, method).toBe("GET, HEAD");
      expect(response.body).toMatch(/^method .* not allowed/);
    }
    expect(engine.readerCount).toBe(0);
  });
});

describe("workflowId and key from the URL", () => {
  it("serves an id that needed percent-encoding", async () => {
    const id = "a b/c?d#e%f&g=h é 中 🙂";
    const wf = engine.workflow("odd-id", async (ctx) => ctx.writeStream("k/é ?", "v"));
    await (await wf.start(undefined, { workflowId: id })).getResult();
    const response = await get(path(id, "k/é ?"));
    expect(response.status).toBe(200);
    expect(sseEntries(response.body)).toEqual({ entries: [[0, "v"]], closed: true });
  });

  it("answers 400 to control characters, more than 200 characters, and malformed percent-encoding", async () => {
    for (const [segment, parameter, message] of [
      ["a%01b", "workflowId", "must not contain control characters"],
      ["a%00", "workflowId", "must not contain control characters"],
      ["a%7F", "workflowId", "must not contain control characters"],
      ["%0A", "workflowId", "must not contain control characters"],
      ["x".repeat(201), "workflowId", "is 201 characters long; the limit is 200"],
      // Characters are code points: 201 emoji (402 UTF-16 units) are 201 characters.
      ["%F0%9F%99%82".repeat(201), "workflowId", "is 201 characters long; the limit is 200"],
    ] as const) {
      expect400(await get(`/streams/${segment}/s`), parameter, message, segment.slice(0, 20));
      expect400(await get(`/streams/ten/${segment}`), "stream key", message, `key ${segment.slice(0, 20)}`);
    }
    // Malformed percent-encoding (and a lone surrogate's bytes) never reach streamResponse: decodeURIComponent
    // throws, and the documented router answers 400 itself.
    for (const segment of ["%", "%E0%A4%A", "%ED%A0%80", "%FF", "%zz"]) {
      const response = await get(`/streams/${segment}/s`);
      expect(response.status, segment).toBe(400);
      expect(response.body).toBe("malformed percent-encoding in the path\n");
    }
    expect((await get(`/streams/${"x".repeat(200)}/s`)).status).toBe(404); // 200 is fine, and unknown
    expect((await get(`/streams/${"%F0%9F%99%82".repeat(200)}/s`)).status).toBe(404); // so are 200 emoji
    expect(server.errors).toEqual([]);
  });

  it("answers 400 to lone surrogates and to a missing id or key (a route that split the path), not a rejection", async () => {
    const call = (workflowId: unknown, key: unknown) =>
      streamResponse(engine, { workflowId, key, request: new Request("http://x/"), authorize: () => true } as never);
    for (const [workflowId, key, text] of [
      ["a\uD800", "s", /^workflowId contains a lone UTF-16 surrogate/],
      ["ten", "\uDC00x", /^stream key contains a lone UTF-16 surrogate/],
      // Before: undefined rejected streamResponse (toNodeHandler: 500), though it is what
      // `pathname.split("/")` gives for a path that is too short.
      [undefined, "s", /^workflowId is missing/],
      ["ten", undefined, /^stream key is missing/],
      ["", "s", /^workflowId must not be empty/],
    ] as const) {
      const response = await call(workflowId, key);
      expect(response.status, String(text)).toBe(400);
      expect(await response.text()).toMatch(text);
    }
    // A non-string that no URL can produce is the app's bug: a rejection.
    await expect(call(42, "s")).rejects.toThrow(/workflowId must be a string, got 42/);
  });

  it("the README's split router answers 400 (not 500) to a path too short", async () => {
    const readme = await startServer((req) => {
      const [, , workflowId, key] = new URL(req.url).pathname.split("/");
      return streamResponse(engine, { workflowId: workflowId!, key: key!, request: req, authorize: () => true });
    });
    try {
      for (const p of ["/", "/streams", "/streams/ten", "/streams/ten/"]) {
        const response = await request(readme.port, p);
        expect(response.status, p).toBe(400);
      }
      expect((await request(readme.port, "/streams/ten/s")).status).toBe(200);
      expect(readme.errors).toEqual([]);
    } finally {
      await readme.close();
    }
  });
});
