// A stream as JSON (?format=json&from=&to=): final, and cacheable for good, once closed.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamResponse, toNodeHandler, type RangeBody } from "../src/http/index.js";
import type { Engine } from "../src/index.js";
import { gate, openEngine } from "./support/engines.js";

let engine: Engine;
let server: http.Server;
let base: string;

beforeAll(async () => {
  engine = await openEngine();
  server = http.createServer(
    toNodeHandler(async (request) => {
      const [, workflowId, key] = new URL(request.url).pathname.split("/").map(decodeURIComponent);
      return streamResponse(engine, { workflowId: workflowId!, key: key!, request, authorize: () => true });
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const json = (workflowId: string, query = "", init?: RequestInit) =>
  fetch(`${base}/${encodeURIComponent(workflowId)}/s?format=json${query}`, init);

const IMMUTABLE = "public, max-age=31536000, immutable";

describe("a closed stream as JSON", () => {
  let workflowId: string;
  beforeAll(async () => {
    const wf = engine.workflow("letters", async (ctx) => {
      for (const letter of "abcdef") await ctx.writeStream("s", letter);
    });
    const handle = await wf.start();
    await handle.getResult();
    workflowId = handle.workflowId;
  });

  it("answers the range from ≤ offset < to, immutable, with an ETag", async () => {
    const response = await json(workflowId, "&from=1&to=4");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(response.headers.get("cache-control")).toBe(IMMUTABLE);
    expect(response.headers.get("etag")).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    expect(await response.json()).toEqual<RangeBody>({
      entries: [{ offset: 1, value: "b" }, { offset: 2, value: "c" }, { offset: 3, value: "d" }],
      next: 4,
      closed: true,
    });
  });

  it("defaults to the whole stream, and clips a range past its end", async () => {
    const whole = (await (await json(workflowId)).json()) as RangeBody;
    expect(whole.entries.map((e) => e.value).join("")).toBe("abcdef");
    expect(whole).toMatchObject({ next: 6, closed: true });
    const past = (await (await json(workflowId, "&from=4&to=100")).json()) as RangeBody;
    expect(past).toEqual({ entries: [{ offset: 4, value: "e" }, { offset: 5, value: "f" }], next: 6, closed: true });
    const beyond = (await (await json(workflowId, "&from=50")).json()) as RangeBody;
    expect(beyond).toEqual({ entries: [], next: 50, closed: true });
  });

  it("gives the same ETag to the same range, another to another, and 304 to If-None-Match", async () => {
    const a = (await json(workflowId, "&from=0&to=3")).headers.get("etag")!;
    const again = (await json(workflowId, "&from=0&to=3")).headers.get("etag")!;
    const other = (await json(workflowId, "&from=0&to=4")).headers.get("etag")!;
    expect(again).toBe(a);
    expect(other).not.toBe(a);
    const cached = await json(workflowId, "&from=0&to=3", { headers: { "if-none-match": `"nope", ${a}` } });
    expect(cached.status).toBe(304);
    expect(cached.headers.get("etag")).toBe(a);
    expect(cached.headers.get("cache-control")).toBe(IMMUTABLE);
    expect(await cached.text()).toBe("");
    const stale = await json(workflowId, "&from=0&to=3", { headers: { "if-none-match": other } });
    expect(stale.status).toBe(200);
  });

  it("answers 400 to a malformed or inverted range, 404 to an unknown workflow", async () => {
    for (const query of ["&from=x", "&from=-1", "&to=1.5", "&from=3&to=2"]) {
      const response = await json(workflowId, query);
      expect(response.status, query).toBe(400);
      expect(response.headers.get("cache-control")).toBe("no-store");
    }
    expect(await (await json(workflowId, "&from=3&to=2")).text()).toMatch(/to \(2\) must not be below from \(3\)/);
    const unknown = await json("nobody");
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get("cache-control")).toBe("no-store");
  });
});

describe("an open stream as JSON", () => {
  it("is no-store with no ETag, and becomes immutable once the stream closes", async () => {
    const release = gate();
    const wf = engine.workflow("open", async (ctx) => {
      await ctx.writeStream("s", 1);
      await ctx.writeStream("s", 2);
      await release.promise;
    });
    const handle = await wf.start();
    // Wait until both are stored (the JSON answer is whatever is stored now).
    for await (const entry of engine.readStreamEntries(handle.workflowId, "s")) if (entry.offset === 1) break;
    const response = await json(handle.workflowId, "&from=0&to=5");
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.headers.get("etag")).toBeNull();
    const body = (await response.json()) as RangeBody;
    expect(body).toMatchObject({ next: 2, closed: false });
    expect(body.entries).toEqual([{ offset: 0, value: 1 }, { offset: 1, value: 2 }]);
    release.open();
    await handle.getResult();
    const closed = await json(handle.workflowId, "&from=0&to=5");
    expect(closed.headers.get("cache-control")).toBe(IMMUTABLE);
    expect(await closed.json()).toEqual({ ...body, closed: true });
  });
});
