// toNodeHandler at the edges node:http lets through: odd Host headers and request
// targets, absurdly long URLs, bodies cut short, clients gone before the headers, a
// handler that returns no Response. Never a 500 for the client's doing, never an
// unhandled rejection or a crash; the server keeps serving.
import net from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { streamResponse } from "../src/http/index.js";
import type { Engine } from "../src/index.js";
import { gate, openEngine, within } from "./support/engines.js";
import { request, sseEntries, startServer, streamRoute, type TestServer } from "./http.support.js";

let engine: Engine;
let server: TestServer;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  process.on("unhandledRejection", onUnhandled);
  engine = await openEngine();
  server = await startServer(streamRoute(engine));
  const wf = engine.workflow("two", async (ctx) => {
    await ctx.writeStream("s", "a");
    await ctx.writeStream("s", "b");
  });
  await (await wf.start(undefined, { workflowId: "two" })).getResult();
});

beforeEach(() => {
  server.errors.length = 0;
});

afterAll(async () => {
  await server.close();
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled).toEqual([]);
});

interface RawAnswer {
  status: number;
  head: string;
  body: string;
}

/** Writes `text` as it is on a fresh TCP connection and reads until the server closes it. */
function raw(port: number, text: string | Buffer): Promise<RawAnswer> {
  return within(5000, "the raw answer", new Promise<RawAnswer>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.once("error", reject);
    socket.once("close", () => {
      const all = Buffer.concat(chunks).toString("latin1");
      const end = all.indexOf("\r\n\r\n");
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(all);
      if (!match) return reject(new Error(`no status line in ${JSON.stringify(all.slice(0, 200))}`));
      const head = all.slice(0, end);
      const body = all.slice(end + 4);
      resolve({ status: Number(match[1]), head, body: /\r\ntransfer-encoding: chunked/i.test(head) ? dechunk(body) : body });
    });
    socket.write(text);
  }));
}

/** The payload of a chunked body (Latin-1 in, so byte counts are character counts). */
function dechunk(body: string): string {
  let out = "";
  for (let at = 0; ;) {
    const eol = body.indexOf("\r\n", at);
    const size = Number.parseInt(body.slice(at, eol), 16);
    if (!(size > 0)) return Buffer.from(out, "latin1").toString("utf8");
    out += body.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

const get = (target: string, headers: string[] = ["Host: localhost"]) =>
  raw(server.port, `GET ${target} HTTP/1.1\r\n${[...headers, "Connection: close"].join("\r\n")}\r\n\r\n`);

describe("the Host header and the request target", () => {
  it("answers 400 to a Host that is not a host[:port], or to two Host lines", async () => {
    for (const host of ["[::1", "exa mple.com", "user@evil.example", "a/b", "a?b", "a#b", "a\\b", "127.0.0.1:99999", "%zz"]) {
      const answer = await get("/streams/two/s", [`Host: ${host}`]);
      // Before: "a/b", "a?b", "a#b" and "a\\b" were served (the rest of the Host dropped or taken as a path).
      expect(answer.status, host).toBe(400);
      expect(answer.body, host).toMatch(/^malformed Host header/);
    }
    const twice = await get("/streams/two/s", ["Host: a.example", "Host: b.example"]);
    // Before: served, with the first one.
    expect(twice.status).toBe(400);
    expect(twice.body).toMatch(/^more than one Host header/);
    expect(server.errors).toEqual([]);
  });

  it("serves an empty Host (allowed by HTTP/1.1), a Host with a port, and HTTP/1.0 without one", async () => {
    // Before: an empty Host was a 400 ("Invalid URL").
    for (const headers of [["Host:"], ["Host: example.com:8080"], ["Host: [::1]:80"], ["Host: EXAMPLE.com."]]) {
      const answer = await get("/streams/two/s", headers);
      expect(answer.status, headers[0]).toBe(200);
    }
    const old = await raw(server.port, "GET /streams/two/s HTTP/1.0\r\n\r\n");
    expect(old.status).toBe(200);
    expect(sseEntries(old.body)).toEqual({ entries: [[0, "a"], [1, "b"]], closed: true });
    // HTTP/1.1 requires a Host: node:http itself answers 400.
    expect((await raw(server.port, "GET /streams/two/s HTTP/1.1\r\nConnection: close\r\n\r\n")).status).toBe(400);
  });

  it("keeps a path that starts with // as a path, never as another host", async () => {
    const seen: string[] = [];
    const echo = await startServer((r) => {
      seen.push(r.url);
      return new Response(new URL(r.url).pathname);
    });
    try {
      const answer = await raw(echo.port, "GET //evil.example/streams/two/s HTTP/1.1\r\nHost: good.example\r\nConnection: close\r\n\r\n");
      expect(answer.status).toBe(200);
      // Before: request.url was http://evil.example/streams/two/s.
      expect(seen).toEqual(["http://good.example//evil.example/streams/two/s"]);
      const absolute = await raw(echo.port, "GET http://other.example/x?y HTTP/1.1\r\nHost: good.example\r\nConnection: close\r\n\r\n");
      expect(absolute.status).toBe(200);
      expect(seen[1]).toBe("http://other.example/x?y"); // an absolute-form target names its host (RFC 9112 3.2.2)
      const star = await raw(echo.port, "OPTIONS * HTTP/1.1\r\nHost: good.example\r\nConnection: close\r\n\r\n");
      expect(star.status).toBe(200);
      const withCredentials = await raw(echo.port, "GET http://u:p@other.example/ HTTP/1.1\r\nHost: good.example\r\nConnection: close\r\n\r\n");
      expect(withCredentials.status).toBe(400);
      expect(echo.errors).toEqual([]);
    } finally {
      await echo.close();
    }
  });

  it("answers an absurdly long URL with 431 (node:http) or 400, never 500", async () => {
    expect((await get(`/streams/two/s?lastEventId=${"7".repeat(100_000)}`)).status).toBe(431);
    const long = await get(`/streams/two/s?lastEventId=${"7".repeat(15_000)}`);
    expect(long.status).toBe(400);
    expect(long.body).toMatch(/^lastEventId must be an integer from 0 to/);
    expect((await get(`/streams/${"x".repeat(15_000)}/s`)).status).toBe(400);
    expect((await get(`/streams/two/s?format=json&${"a=b&".repeat(3000)}`)).status).toBe(200);
    expect(server.errors).toEqual([]);
  });
});

describe("clients that leave early", () => {
  it("survives a request body cut short, whether or not the handler reads it", async () => {
    const reading = await startServer(async (r) => new Response(`read ${(await r.text()).length}`));
    try {
      for (const port of [server.port, reading.port]) {
        const socket = net.connect(port, "127.0.0.1");
        await new Promise((resolve) => socket.once("connect", resolve));
        const closed = new Promise((resolve) => socket.once("close", resolve));
        socket.write("POST /streams/two/s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789");
        socket.destroy();
        await closed;
      }
      // Both servers still answer.
      expect((await request(server.port, "/streams/two/s")).status).toBe(200);
      const whole = await request(reading.port, "/", { method: "POST", body: "x".repeat(10) });
      expect(whole).toMatchObject({ status: 200, body: "read 10" });
      // A handler that reads a body cut short sees its read fail: its rejection is reported, as any.
      expect(reading.errors).toHaveLength(1);
      expect(reading.errors[0]).toMatchObject({ code: "ECONNRESET" });
      expect(server.errors).toEqual([]);
    } finally {
      await reading.close();
    }
  });

  it("frees everything when the client leaves before the headers (event stream and JSON)", async () => {
    for (const query of ["", "?format=json"]) {
      const asked = gate();
      const answer = gate<boolean>();
      const answered = gate();
      const slow = await startServer(async (r) => {
        const match = /^\/streams\/([^/]+)\/([^/]+)$/.exec(new URL(r.url).pathname)!;
        const response = await streamResponse(engine, {
          workflowId: match[1]!, key: match[2]!, request: r,
          authorize: () => {
            asked.open();
            return answer.promise;
          },
        });
        answered.open();
        return response;
      });
      try {
        const socket = net.connect(slow.port, "127.0.0.1");
        const closed = new Promise((resolve) => socket.once("close", resolve));
        socket.write(`GET /streams/two/s${query} HTTP/1.1\r\nHost: x\r\n\r\n`);
        await within(2000, "authorize to be asked", asked.promise);
        socket.destroy();
        await closed;
        answer.open(true);
        await within(2000, "the handler to answer", answered.promise);
        // The reader of the response nobody will read is freed, and nothing is reported.
        await within(2000, "readerCount 0", (async () => {
          while (engine.readerCount !== 0) await new Promise((resolve) => setImmediate(resolve));
        })());
        expect(slow.errors, query).toEqual([]);
      } finally {
        await slow.close();
      }
    }
  });
});

describe("a handler that fails", () => {
  it("answers 500 and reports it when the handler throws or returns no Response", async () => {
    for (const result of [undefined, null, "text", { status: 200 }]) {
      const bad = await startServer(() => result as never);
      try {
        // Before: anything but a Response left the client waiting forever (and reported a TypeError).
        const answer = await within(2000, `an answer for ${String(result)}`, request(bad.port, "/"));
        expect(answer.status).toBe(500);
        expect(bad.errors).toHaveLength(1);
        expect(String(bad.errors[0])).toMatch(/handler must return a Response/);
      } finally {
        await bad.close();
      }
    }
    const throwing = await startServer(() => {
      throw new Error("boom");
    });
    try {
      expect((await request(throwing.port, "/")).status).toBe(500);
      expect(throwing.errors).toEqual([new Error("boom")]);
    } finally {
      await throwing.close();
    }
  });
});
