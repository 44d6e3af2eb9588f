// The door during an outage, for real: a TCP proxy between the engine and Postgres is cut
// (connections refused; answered "starting up"; or accepted and dropped at once), and the
// engine, opened with a short retryTimeoutMs, gives up on its calls. The door answers 503
// with Retry-After (never 500) to event-stream and JSON requests alike, then 200 once the
// proxy heals. A closing or closed engine is a 503 too, and an event stream open when it
// closes ends without the close event.
import http from "node:http";
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import type { Engine } from "../src/index.js";
import { databaseUrl, gate, openEngine, within } from "./support/engines.js";
import { PausableProxy, type Outage } from "./faults/support/proxy.js";
import { request, sseEntries, startServer, streamRoute, type RawResponse, type TestServer } from "./http.support.js";

const upstream = new URL(databaseUrl);
const isPool = (name: string) => name.endsWith(":pool");

let proxy: PausableProxy;
let server: TestServer | undefined;

beforeEach(async () => {
  proxy = await PausableProxy.start({ host: upstream.hostname, port: Number(upstream.port || 5432) });
});

afterEach(async () => {
  await server?.close();
  server = undefined;
});

/**
 * An engine behind the proxy, a server for it whose streamResponse waits at most
 * `timeoutMs`, and a finished workflow "w" with 0, 1, 2 in stream "s".
 */
async function setUp(
  retryTimeoutMs: number, timeoutMs: number, onAnswer: (response: Response) => void = () => {},
): Promise<{ engine: Engine; server: TestServer }> {
  onTestFinished(() => proxy.close()); // registered first, so it runs after the engine has closed
  const engine = await openEngine({ databaseUrl: proxy.url(databaseUrl), retryTimeoutMs });
  engine.on("error", () => {}); // the listener's reconnect failures: expected here
  const route = streamRoute(engine, { timeoutMs });
  server = await startServer(async (r) => {
    const response = await route(r);
    onAnswer(response);
    return response;
  });
  const wf = engine.workflow("three", async (ctx) => {
    for (let i = 0; i < 3; i++) await ctx.writeStream("s", i);
  });
  await (await wf.start(undefined, { workflowId: "w" })).getResult();
  return { engine, server };
}

function expect503(response: RawResponse, why: RegExp, what: string) {
  expect(response.status, `${what}: ${response.body}`).toBe(503);
  expect(response.headers["retry-after"], what).toBe("2");
  expect(response.headers["cache-control"], what).toBe("no-store");
  expect(response.body, what).toMatch(why);
}

// Which one depends on what ends the wait first: the engine's retries (300 ms, though one
// attempt may wait longer for the pool's reconnect), or the door's timeoutMs (1000 ms).
const UNREACHABLE = /^the stream is not available: the database (cannot be reached|did not answer within 1000 ms); retry later\n$/;
const SHUTTING_DOWN = /^the stream is not available: the server is shutting down; retry later\n$/;
const TARGETS = {
  sse: "/streams/w/s",
  json: "/streams/w/s?format=json",
  "sse after Last-Event-ID": "/streams/w/s?lastEventId=0",
  "json range": "/streams/w/s?format=json&from=1&to=2",
  "unknown workflow": "/streams/nobody/s",
};

describe("while Postgres is unreachable", () => {
  const cases: [Outage, string, RegExp][] = [
    ["refuse", "connections refused (Postgres stopped)", UNREACHABLE],
    ["starting", "connections answered FATAL 57P03 (Postgres starting up)", UNREACHABLE],
    // Unpatched, postgres.js reconnected without end to a server that hangs up at once, and
    // only the door's own timeoutMs ended the wait; patched, the engine's retries end it.
    ["reset", "connections accepted and dropped at once (a proxy with nothing behind it)", UNREACHABLE],
  ];
  for (const [mode, how, why] of cases) {
    it(`answers 503 with Retry-After, then 200 once it is back: ${how}`, async () => {
      const { server } = await setUp(300, 1000);
      expect((await request(server.port, TARGETS.sse)).status).toBe(200);
      await proxy.cut(mode);
      // All at once: each waits out the engine's retries (or the door's timeout).
      const asked = Object.entries(TARGETS).flatMap(([what, target]) => [
        { what, answer: request(server.port, target), why },
        { what: `HEAD ${what}`, answer: request(server.port, target, { method: "HEAD" }), why: /^$/ },
      ]);
      for (const { what, answer, why } of asked) {
        // Before: 500 (ConnectionError escaped streamResponse), or no answer at all ("reset").
        expect503(await within(5000, what, answer), why, what);
      }
      // What needs no database is still decided: a malformed parameter is the client's.
      expect((await request(server.port, "/streams/w/s?lastEventId=x")).status).toBe(400);
      expect((await request(server.port, "/streams/w/s", { method: "POST", body: "" })).status).toBe(405);

      await proxy.heal();
      // The pool reconnects with a backoff of up to 1 s: until then a request may still be a 503.
      const recovered = await within(15_000, "a 200 after the heal", (async () => {
        for (;;) {
          const response = await request(server.port, TARGETS.sse);
          if (response.status !== 503) return response;
        }
      })());
      expect(recovered.status).toBe(200);
      expect(sseEntries(recovered.body)).toEqual({ entries: [[0, 0], [1, 1], [2, 2]], closed: true });
      const json = await request(server.port, TARGETS["json range"]);
      expect(json.status).toBe(200);
      expect(JSON.parse(json.body)).toEqual({ entries: [{ offset: 1, value: 1 }], next: 2, closed: true });
      expect((await request(server.port, TARGETS["unknown workflow"])).status).toBe(404);
      expect(server.errors).toEqual([]);
    });
  }
});

describe("a closing or closed engine", () => {
  it("answers 503 at once to the requests whose calls it was retrying, and to every request after", async () => {
    // Long bounds: only the close can end these requests early.
    const { engine, server } = await setUp(60_000, 60_000);
    await proxy.cut("starting");
    const before = proxy.refused.filter(isPool).length;
    const pending = [request(server.port, TARGETS.sse), request(server.port, TARGETS.json)];
    // Two pool connections turned away after the requests went out: both calls are retrying.
    await within(5000, "the pool's connection attempts", proxy.refusedAtLeast(before + 2, isPool));
    const closing = engine.close();
    // Before: 500 (a ConnectionError, and only after the 60 s).
    const [sse, json] = await within(2000, "the answers once the engine closes", Promise.all(pending));
    expect503(sse!, SHUTTING_DOWN, "sse");
    expect503(json!, SHUTTING_DOWN, "json");
    for (const [what, target] of Object.entries(TARGETS)) {
      expect503(await within(1000, what, request(server.port, target)), SHUTTING_DOWN, `${what} while closing`);
    }
    await proxy.heal();
    await closing;
    for (const [what, target] of Object.entries(TARGETS)) {
      expect503(await request(server.port, target), SHUTTING_DOWN, `${what} after close`);
    }
    expect(server.errors).toEqual([]);
  });

  it("answers 499 (read by nobody) and reports nothing when the client leaves while the engine retries", async () => {
    const answered = gate<Response>();
    const { server } = await setUp(60_000, 60_000, (response) => answered.open(response));
    await proxy.cut("starting");
    const before = proxy.refused.filter(isPool).length;
    const client = http.get(`${server.base}${TARGETS.json}`);
    client.on("error", () => {}); // destroyed below
    await within(5000, "the pool's connection attempt", proxy.refusedAtLeast(before + 1, isPool));
    client.destroy();
    // Before: streamResponse rejected with the client's abort reason (toNodeHandler: onError).
    const response = await within(2000, "the handler's answer", answered.promise);
    expect(response.status).toBe(499);
    expect(server.errors).toEqual([]);
    await proxy.heal();
  });

  it("ends an open event stream without the close event (EventSource reconnects elsewhere), reporting nothing", async () => {
    const { engine, server } = await setUp(300, 1000);
    const release = gate();
    const wf = engine.workflow("open", async (ctx) => {
      await ctx.writeStream("s", "first");
      await release.promise;
    });
    const handle = await wf.start();
    const response = await fetch(`${server.base}/streams/${handle.workflowId}/s`);
    expect(response.status).toBe(200);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n\n")) text += (await within(5000, "the first event", reader.read())).value ?? "";
    await engine.close();
    for (;;) {
      const { done, value } = await within(5000, "the end of the body", reader.read());
      if (done) break;
      text += value;
    }
    // Before: the body failed (the connection was reset) and onError got EngineClosedError.
    expect(sseEntries(text)).toEqual({ entries: [[0, "first"]], closed: false });
    expect(server.errors).toEqual([]);
    release.open();
  });
});
