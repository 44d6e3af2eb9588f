// A property of the whole door: for arbitrary header values and query strings (with the
// known edges mixed in), sent as real requests through toNodeHandler on a real node:http
// server backed by a real engine, the status is the one the documented rules give and is
// always one of 200, 304, 400, 403, 404 (503 needs an outage: test/http.outage.test.ts); a
// 400 names the offending parameter; a 200 event stream starts at the right offset and a
// 200 range holds the right entries. Seeded (HTTP_PROPERTY_SEED to replay); on failure
// fast-check prints the seed, the path and the shrunk counterexample.
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Engine } from "../src/index.js";
import { openEngine } from "./support/engines.js";
import { MAX, request, sseEntries, startServer, streamRoute, type TestServer } from "./http.support.js";

const SEED = Number(process.env.HTTP_PROPERTY_SEED ?? 6);
const RUNS = Number(process.env.HTTP_PROPERTY_RUNS ?? 400);
const COUNT = 5; // stream "s" of workflow "p": 0, 1, 2, 3, 4, then the close

let engine: Engine;
let server: TestServer;

beforeAll(async () => {
  engine = await openEngine();
  server = await startServer(streamRoute(engine));
  const wf = engine.workflow("five", async (ctx) => {
    for (let i = 0; i < COUNT; i++) await ctx.writeStream("s", i);
  });
  await (await wf.start(undefined, { workflowId: "p" })).getResult();
});

afterAll(async () => {
  await server.close();
});

// ---- what is sent ---------------------------------------------------------------------

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((n) => String.fromCharCode(n));
const anyText = (maxLength: number) =>
  fc.string({ unit: fc.oneof({ weight: 8, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) }, { weight: 1, arbitrary: loneSurrogate }), maxLength });
const EDGES = [
  "0", "1", "2", "3", "4", "5", "6", String(MAX - 1), String(MAX), String(MAX + 1), String(2n ** 64n), "-1", "", " 5", "5 ",
  "+5", "0x10", "1e3", "05", "00", "NaN", "Infinity", "５", "٣", "9".repeat(1000), "1.0", "-0",
];
const offsetText = fc.oneof(
  { weight: 5, arbitrary: fc.integer({ min: 0, max: 8 }).map(String) },
  { weight: 3, arbitrary: fc.constantFrom(...EDGES) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 66n }).map(String) },
  { weight: 1, arbitrary: fc.stringMatching(/^[-+ 0-9.eExX]{0,5}$/) },
  { weight: 1, arbitrary: anyText(6) },
);
/** 0, 1 or 2 values: absent, once, or repeated. */
const occurrences = <T>(value: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 6, arbitrary: fc.constant([] as T[]) }, { weight: 8, arbitrary: value.map((v) => [v]) }, { weight: 1, arbitrary: fc.tuple(value, value) });

/** A header value as a client can send it: Latin-1, no control character but tab. */
const headerValue = fc.oneof(
  { weight: 4, arbitrary: offsetText.map((text) => Buffer.from(text, "utf8").toString("latin1").replace(/[^\t\x20-\x7e\x80-\xff]/g, "")) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom("\t", " ", "0", "1", "5", "9", "a", ",", '"', "*", "W", "/", "\u00e9", "\u00ff"), maxLength: 8 }) },
);

const segment = fc.oneof(
  { weight: 6, arbitrary: fc.constant("p") },
  { weight: 1, arbitrary: fc.constant("nobody") },
  { weight: 2, arbitrary: anyText(12).filter((s) => s.length > 0).map(encode) },
  { weight: 1, arbitrary: fc.constantFrom("%", "%E0%A4%A", "%ED%A0%80", "%FF", "%zz", "%01", "%00", "%7F", "x".repeat(201), "%F0%9F%99%82".repeat(100), "a%20b") },
);
const keySegment = fc.oneof({ weight: 6, arbitrary: fc.constantFrom("s", "unwritten") }, { weight: 1, arbitrary: segment });

interface Sent {
  workflowId: string;
  key: string;
  method: "GET" | "HEAD";
  params: [name: string, value: string][];
  /** Raw fragments appended to the query as they are ("%zz", "&&", "#", …). */
  junk: string[];
  lastEventId: string[];
  ifNoneMatch: string[];
  refused: boolean;
}

const sent: fc.Arbitrary<Sent> = fc.record({
  workflowId: segment,
  key: keySegment,
  method: fc.constantFrom<"GET" | "HEAD">("GET", "GET", "GET", "HEAD"),
  params: fc.tuple(
    occurrences(fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom("sse", "json", "json") },
      { weight: 2, arbitrary: fc.constantFrom("", "SSE", "Json", "xml", " json") },
      { weight: 1, arbitrary: anyText(5) },
    )).map((vs) => vs.map((v) => ["format", v] as [string, string])),
    occurrences(offsetText).map((vs) => vs.map((v) => ["lastEventId", v] as [string, string])),
    occurrences(offsetText).map((vs) => vs.map((v) => ["from", v] as [string, string])),
    occurrences(offsetText).map((vs) => vs.map((v) => ["to", v] as [string, string])),
    occurrences(fc.tuple(anyText(4), anyText(4))),
  ).chain(([format, last, from, to, other]) => fc.shuffledSubarray([...format, ...last, ...from, ...to, ...other], { minLength: 0 })),
  junk: fc.array(fc.constantFrom("%zz", "&", "&&", "=", "==x", "+", "%", "%E0%A4%A", "#", "format", "lastEventId%3D3", "%26to%3D1"), { maxLength: 2 }),
  lastEventId: occurrences(headerValue),
  ifNoneMatch: occurrences(fc.oneof(fc.constant("*"), fc.constant("<etag>"), fc.constant("<etag>"), fc.constant("W/<etag>"), headerValue)),
  refused: fc.integer({ min: 0, max: 9 }).map((n) => n === 9), // authorize says no to one in ten (shrinks to yes)
});

/** Percent-encodes the UTF-8 bytes of `text` (a lone surrogate becomes U+FFFD's, as in any encoder). */
function encode(text: string): string {
  return [...Buffer.from(text, "utf8")].map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`)).join("");
}

function pathOf(s: Sent): string {
  const parts = [...s.params.map(([name, value]) => `${encode(name)}=${encode(value)}`), ...s.junk];
  return `/streams/${s.workflowId}/${s.key}${parts.length > 0 ? `?${parts.join("&")}` : ""}`;
}

// ---- what the documented rules say ------------------------------------------------------

type Expected =
  | { status: 400; names: RegExp }
  | { status: 403 | 404 }
  | { status: 200; count: number; format: "sse"; from: number }
  | { status: 200; count: number; format: "json"; from: number; to: number | undefined };

const OFFSET = /^(0|[1-9][0-9]*)$/;
const offsetAtMost = (text: string, max: number) => OFFSET.test(text) && BigInt(text) <= BigInt(max);

/** docs/http.md, written again from the rules (no code shared with src/http). */
function expected(path: string, s: Sent): Expected {
  const url = new URL(`http://localhost${path}`);
  const match = /^\/streams\/([^/]+)\/([^/]+)$/.exec(url.pathname);
  if (!match) return { status: 404 }; // "." or ".." segments (or %2E) moved the path: the router's 404
  let ids: string[];
  try {
    ids = [decodeURIComponent(match[1]!), decodeURIComponent(match[2]!)];
  } catch {
    return { status: 400, names: /^malformed percent-encoding in the path\n$/ };
  }
  for (const [name, id] of [["workflowId", ids[0]!], ["stream key", ids[1]!]] as const) {
    if (id.length > 200 || /[\u0000-\u001f\u007f]/.test(id)) return { status: 400, names: new RegExp(`^${name} `) };
  }
  const count = ids[1] === "s" ? COUNT : 0; // every other stream of "p" is closed and empty
  const params = url.searchParams;
  const one = (name: string): string | undefined | "twice" => {
    const values = params.getAll(name);
    return values.length > 1 ? "twice" : values[0] || undefined;
  };
  const bad = (name: string) => ({ status: 400 as const, names: new RegExp(`^${name} `) });
  const format = one("format") ?? "sse";
  if (format !== "sse" && format !== "json") return bad("format");
  let result: Expected;
  if (format === "json") {
    const from = one("from");
    if (from === "twice" || (from !== undefined && !offsetAtMost(from, MAX))) return bad("from");
    const to = one("to");
    if (to === "twice" || (to !== undefined && !offsetAtMost(to, MAX))) return bad("to");
    if (to !== undefined && Number(to) < Number(from ?? 0)) return bad("to");
    result = { status: 200, count, format, from: Number(from ?? 0), to: to === undefined ? undefined : Number(to) };
  } else {
    // node:http trims a header value's spaces and tabs; two lines are joined with ", ".
    const header = s.lastEventId.map((v) => v.replace(/^[\t ]+|[\t ]+$/g, "")).join(", ");
    let last: number | undefined;
    if (header !== "") {
      if (!offsetAtMost(header, MAX - 1)) return bad("Last-Event-ID");
      last = Number(header);
    } else {
      const query = one("lastEventId");
      if (query === "twice" || (query !== undefined && !offsetAtMost(query, MAX - 1))) return bad("lastEventId");
      last = query === undefined ? undefined : Number(query);
    }
    result = { status: 200, count, format, from: last === undefined ? 0 : last + 1 };
  }
  if (s.refused) return { status: 403 };
  if (ids[0] !== "p") return { status: 404 };
  return result;
}

// ---- the property -----------------------------------------------------------------------

it(`answers every request by the documented rules (${RUNS} runs, seed ${SEED})`, async () => {
  // ETags of the ranges seen so far, so that If-None-Match can name a real one.
  const etags = new Map<string, string>();
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(sent, async (s) => {
      const path = pathOf(s);
      const rangeKey = path.split("#")[0]!;
      const etag = etags.get(rangeKey) ?? '"none"';
      const headers: Record<string, string[]> = {};
      if (s.lastEventId.length > 0) headers["last-event-id"] = s.lastEventId;
      if (s.ifNoneMatch.length > 0) headers["if-none-match"] = s.ifNoneMatch.map((v) => v.replace("<etag>", etag));
      if (s.refused) headers.authorization = ["Bearer nope"];
      const errorsBefore = server.errors.length;
      const response = await request(server.port, path, { method: s.method, headers });
      const want = expected(path, s);
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);

      expect([200, 304, 400, 403, 404, 503]).toContain(response.status);
      expect(server.errors.slice(errorsBefore)).toEqual([]);
      if (want.status !== 200) {
        expect(response.status).toBe(want.status);
        if (want.status === 400 && s.method === "GET") expect(response.body).toMatch(want.names);
        return;
      }
      if (want.format === "sse") {
        expect(response.status).toBe(200);
        expect(response.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
        if (s.method === "HEAD") return;
        const entries = Array.from({ length: Math.max(0, want.count - want.from) }, (_, i): [number, unknown] => [want.from + i, want.from + i]);
        expect(sseEntries(response.body)).toEqual({ entries, closed: true });
        return;
      }
      // A closed stream's range: 304 exactly when If-None-Match names its ETag (or is *).
      const tag = response.headers.etag as string;
      expect(tag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
      etags.set(rangeKey, tag);
      const tags = s.ifNoneMatch.flatMap((v) => v.replace("<etag>", etag).split(",")).map((t) => t.replace(/^[\t ]+|[\t ]+$/g, ""));
      const matched = tags.some((t) => t === "*" || t === tag || t === `W/${tag}`);
      expect(response.status).toBe(matched ? 304 : 200);
      if (matched || s.method === "HEAD") return;
      const end = Math.min(want.count, want.to ?? want.count);
      const entries = Array.from({ length: Math.max(0, end - want.from) }, (_, i) => ({ offset: want.from + i, value: want.from + i }));
      expect(JSON.parse(response.body)).toEqual({ entries, next: want.from + entries.length, closed: true });
    }),
    { seed: SEED, numRuns: RUNS },
  );
  // The runs reached every kind of answer (else the generators need another look).
  for (const status of [200, 304, 400, 403, 404]) expect(statuses.get(status) ?? 0, `answers with ${status}`).toBeGreaterThan(0);
  expect(server.errors).toEqual([]);
  expect(engine.readerCount).toBe(0);
});
