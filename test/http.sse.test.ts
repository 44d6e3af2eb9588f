// Server-Sent Events over a real node:http server, read by real HTTP clients (fetch and
// node:http), against a real Postgres.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamResponse, toNodeHandler } from "../src/http/index.js";
import { InvalidArgumentError, type Engine } from "../src/index.js";
import { gate, openEngine, within } from "./support/engines.js";

interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

/** Parses an event-stream body as it arrives; comments are yielded as event ":comment". */
async function* sseEvents(response: Response): AsyncGenerator<SseEvent> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event: SseEvent = { event: "message", data: "" };
  let hasData = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += value;
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (hasData) yield event;
        event = { event: "message", data: "" };
        hasData = false;
      } else if (line.startsWith(":")) {
        yield { event: ":comment", data: line.slice(1).trim() };
      } else {
        const colon = line.indexOf(":");
        const field = line.slice(0, colon);
        const text = line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") event.id = text;
        else if (field === "event") event.event = text;
        else if (field === "data") {
          event.data = hasData ? `${event.data}\n${text}` : text;
          hasData = true;
        }
      }
    }
  }
}

/** Entries (as [offset, value]) until the close event; fails if the body ends without one. */
async function readToClose(response: Response): Promise<{ entries: [number, unknown][]; closed: boolean }> {
  const entries: [number, unknown][] = [];
  for await (const e of sseEvents(response)) {
    if (e.event === "close") return { entries, closed: true };
    if (e.event === "message") entries.push([Number(e.id), JSON.parse(e.data)]);
  }
  return { entries, closed: false };
}

/** Polls a condition under a deadline: for state with no event of its own (readerCount). */
async function until(what: string, condition: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

let engine: Engine;
let server: http.Server;
let base: string;

beforeAll(async () => {
  engine = await openEngine();
  server = http.createServer(
    toNodeHandler(async (request) => {
      const url = new URL(request.url);
      const [, route, workflowId, key] = url.pathname.split("/").map(decodeURIComponent);
      if (route === "boom") throw new Error("handler failed");
      return streamResponse(engine, {
        workflowId: workflowId!,
        key: key!,
        request,
        authorize: async ({ request: r }) => r.headers.get("authorization") !== "Bearer nope",
        heartbeatMs: route === "fast-heartbeat" ? 50 : undefined,
      });
    }, { onError: () => {} }),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const url = (workflowId: string, key: string, query = "", route = "streams") =>
  `${base}/${route}/${encodeURIComponent(workflowId)}/${encodeURIComponent(key)}${query}`;

/** A workflow that writes `values` to "s" and finishes. */
async function finished(values: unknown[]): Promise<string> {
  const name = `fixed-${Math.random().toString(36).slice(2)}`;
  const wf = engine.workflow(name, async (ctx, input: unknown[]) => {
    for (const v of input) await ctx.writeStream("s", v);
  });
  const handle = await wf.start(values);
  await handle.getResult();
  return handle.workflowId;
}

/** A workflow that writes 0, 1, 2, … to "s", each value once the test opens its gate. */
function stepped(count: number) {
  const gates = Array.from({ length: count }, () => gate());
  const name = `stepped-${Math.random().toString(36).slice(2)}`;
  const wf = engine.workflow(name, async (ctx) => {
    for (let i = 0; i < count; i++) {
      await gates[i]!.promise;
      await ctx.writeStream("s", i);
    }
  });
  return { start: () => wf.start(), gates };
}

describe("GET of a stream as text/event-stream", () => {
  it("sends each entry as `id: <offset>` + `data: <JSON>`, then `event: close`, then ends", async () => {
    const values = ["tok", 42, null, { a: [1, "b"] }, "line\nbreak"];
    const workflowId = await finished(values);
    const response = await fetch(url(workflowId, "s"));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(response.headers.get("cache-control")).toBe("no-store");
    const text = await response.text();
    expect(text).toBe(
      'id: 0\ndata: "tok"\n\nid: 1\ndata: 42\n\nid: 2\ndata: null\n\n' +
        'id: 3\ndata: {"a":[1,"b"]}\n\nid: 4\ndata: "line\\nbreak"\n\nevent: close\ndata:\n\n',
    );
  });

  it("delivers each entry while the workflow writes it", async () => {
    const { start, gates } = stepped(5);
    const handle = await start();
    const response = await fetch(url(handle.workflowId, "s"));
    gates[0]!.open();
    const seen: number[] = [];
    for await (const e of sseEvents(response)) {
      if (e.event === "close") break;
      seen.push(JSON.parse(e.data) as number);
      expect(Number(e.id)).toBe(seen.length - 1);
      gates[seen.length]?.open(); // the next write happens only after this one arrived
    }
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    await within(5000, "workflow end", handle.getResult());
  });

  it("closes an empty stream of a finished workflow at once", async () => {
    const workflowId = await finished([]);
    expect(await readToClose(await fetch(url(workflowId, "never-written")))).toEqual({ entries: [], closed: true });
  });

  it("resumes after Last-Event-ID with no duplicate and no gap, while the stream is live", async () => {
    const { start, gates } = stepped(10);
    const handle = await start();
    for (const g of gates.slice(0, 4)) g.open();
    // First connection: read 4 entries, then drop it.
    const first = new AbortController();
    const seen: [number, unknown][] = [];
    const response = await fetch(url(handle.workflowId, "s"), { signal: first.signal });
    for await (const e of sseEvents(response)) {
      seen.push([Number(e.id), JSON.parse(e.data)]);
      if (seen.length === 4) break;
    }
    first.abort();
    for (const g of gates.slice(4)) g.open();
    // Reconnect the way EventSource does.
    const resumed = await readToClose(await fetch(url(handle.workflowId, "s"), { headers: { "Last-Event-ID": "3" } }));
    expect(resumed.closed).toBe(true);
    const all = [...seen, ...resumed.entries];
    expect(all).toEqual(Array.from({ length: 10 }, (_, i) => [i, i]));
  });

  it("takes the lastEventId query parameter, and prefers the header over it", async () => {
    const workflowId = await finished(["a", "b", "c", "d"]);
    const byQuery = await readToClose(await fetch(url(workflowId, "s", "?lastEventId=1")));
    expect(byQuery.entries).toEqual([[2, "c"], [3, "d"]]);
    const both = await readToClose(await fetch(url(workflowId, "s", "?lastEventId=0"), { headers: { "Last-Event-ID": "2" } }));
    expect(both.entries).toEqual([[3, "d"]]);
    const atEnd = await readToClose(await fetch(url(workflowId, "s"), { headers: { "Last-Event-ID": "3" } }));
    expect(atEnd).toEqual({ entries: [], closed: true });
  });

  it("sends a comment heartbeat while nothing is written", async () => {
    const { start, gates } = stepped(1);
    const handle = await start();
    const response = await fetch(url(handle.workflowId, "s", "", "fast-heartbeat"));
    const events = sseEvents(response);
    const first = await within(2000, "a heartbeat", events.next());
    expect(first.value).toEqual({ event: ":comment", data: "heartbeat" });
    gates[0]!.open();
    for await (const e of events) if (e.event === "close") break;
    await handle.getResult();
  });
});

describe("a client that disconnects", () => {
  it("frees its reader at once (fetch aborted mid-stream)", async () => {
    const { start, gates } = stepped(2);
    const handle = await start();
    gates[0]!.open();
    const client = new AbortController();
    const response = await fetch(url(handle.workflowId, "s"), { signal: client.signal });
    const events = sseEvents(response);
    expect((await events.next()).value).toMatchObject({ id: "0", data: "0" });
    expect(engine.readerCount).toBe(1);
    client.abort();
    await until("readerCount back to 0", () => engine.readerCount === 0, 1000);
    gates[1]!.open();
    await handle.getResult();
  });

  it("frees its reader at once (node:http socket destroyed while the reader waits)", async () => {
    const { start, gates } = stepped(1);
    const handle = await start();
    const target = new URL(url(handle.workflowId, "s"));
    const request = http.get(target);
    const response = await new Promise<http.IncomingMessage>((resolve) => request.once("response", resolve));
    expect(response.statusCode).toBe(200);
    await until("the reader to register", () => engine.readerCount === 1);
    request.destroy();
    await until("readerCount back to 0", () => engine.readerCount === 0, 1000);
    gates[0]!.open();
    await handle.getResult();
  });

  it("frees its reader at once when it leaves mid-history, with the reader held back by a slow socket", async () => {
    const name = "long-history";
    const wf = engine.workflow(name, async (ctx) => {
      const value = "x".repeat(200);
      await Promise.all(Array.from({ length: 20_000 }, () => ctx.writeStream("s", value))); // ≈ 4 MB
    });
    const handle = await wf.start();
    await handle.getResult();
    const client = new AbortController();
    const response = await fetch(url(handle.workflowId, "s"), { signal: client.signal });
    const events = sseEvents(response);
    expect((await events.next()).value).toMatchObject({ id: "0" });
    // The client stops reading here: the socket fills and the server stops pulling entries.
    expect(engine.readerCount).toBe(1);
    client.abort();
    await until("readerCount back to 0", () => engine.readerCount === 0, 1000);
  });

  it("frees the readers of many clients that leave", async () => {
    const { start, gates } = stepped(1);
    const handle = await start();
    const clients = Array.from({ length: 20 }, () => new AbortController());
    await Promise.all(clients.map((c) => fetch(url(handle.workflowId, "s"), { signal: c.signal })));
    await until("20 readers", () => engine.readerCount === 20);
    for (const c of clients) c.abort();
    await until("readerCount back to 0", () => engine.readerCount === 0, 2000);
    gates[0]!.open();
    await handle.getResult();
  });
});

describe("refusals", () => {
  it("answers 400 to a malformed Last-Event-ID or lastEventId, format or stream name", async () => {
    const workflowId = await finished(["x"]);
    for (const bad of ["abc", "-1", "1.5", "01", "1e3", "0x1", "99999999999999999999", " 1"]) {
      // HTTP trims a header value's surrounding spaces, so " 1" is only malformed in the query.
      if (bad !== " 1") {
        const byHeader = await fetch(url(workflowId, "s"), { headers: { "Last-Event-ID": bad } });
        expect(byHeader.status, `Last-Event-ID ${JSON.stringify(bad)}`).toBe(400);
        expect(await byHeader.text()).toMatch(/^Last-Event-ID must be an integer from 0 to 9007199254740990 /);
      }
      const byQuery = await fetch(url(workflowId, "s", `?lastEventId=${encodeURIComponent(bad)}`));
      expect(byQuery.status, `lastEventId ${JSON.stringify(bad)}`).toBe(400);
      expect(await byQuery.text()).toMatch(/^lastEventId must be an integer from 0 to 9007199254740990 /);
    }
    const format = await fetch(url(workflowId, "s", "?format=xml"));
    expect(format.status).toBe(400);
    expect(await format.text()).toMatch(/format must be "sse" or "json"/);
    const control = await fetch(url(workflowId, "a\u0001b"));
    expect(control.status).toBe(400);
    expect(await control.text()).toMatch(/stream key must not contain control characters/);
  });

  it("answers 403 when authorize does not return true, before saying whether the workflow exists", async () => {
    const workflowId = await finished(["x"]);
    const refused = await fetch(url(workflowId, "s"), { headers: { authorization: "Bearer nope" } });
    expect(refused.status).toBe(403);
    const unknown = await fetch(url("no-such-workflow", "s"), { headers: { authorization: "Bearer nope" } });
    expect(unknown.status).toBe(403);
    for (const answer of [false, "yes", 1, undefined]) {
      const response = await streamResponse(engine, {
        workflowId, key: "s", request: new Request("http://x/"),
        authorize: () => answer as boolean,
      });
      expect(response.status, `authorize returned ${String(answer)}`).toBe(403);
    }
  });

  it("answers 404 for an unknown workflow", async () => {
    const response = await fetch(url("no-such-workflow", "s"));
    expect(response.status).toBe(404);
    expect(await response.text()).toBe('workflow "no-such-workflow" does not exist\n');
    expect(engine.readerCount).toBe(0);
  });

  it("refuses to run without an authorize function", async () => {
    const request = new Request("http://x/");
    await expect(
      streamResponse(engine, { workflowId: "w", key: "s", request } as never),
    ).rejects.toThrow(InvalidArgumentError);
    await expect(
      streamResponse(engine, { workflowId: "w", key: "s", request, authorize: true } as never),
    ).rejects.toThrow(/needs an authorize function/);
  });

  it("toNodeHandler answers 500 when the handler throws", async () => {
    const response = await fetch(`${base}/boom/x/y`);
    expect(response.status).toBe(500);
  });
});
