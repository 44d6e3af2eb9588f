// The pool's answer watch (src/db/answerWatch.ts): a connection that owes an answer and
// hears nothing for quietMs is dropped; the answers owed are counted by the protocol.
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { connect, type Sql } from "../src/db/connect.js";
import { ProtocolCounter } from "../src/db/protocolCounter.js";
import { databaseUrl, within } from "./support/engines.js";

const opened: Sql[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((sql) => sql.end({ timeout: 1 })));
});

function watched(quietMs: number): Sql {
  const sql = connect({ url: databaseUrl, schema: "public", role: "pool", max: 1, quietMs });
  opened.push(sql);
  return sql;
}

describe("the answer watch on a real connection", () => {
  it("drops a connection silent on a query pipelined behind an answered one", async () => {
    // The first query's answer cleared the old watch (it looked at bytes, not answers):
    // the second, pipelined behind it, could then wait as long as the path stayed silent.
    const sql = watched(1000);
    await sql`select pg_sleep(${0})`; // described once: the next two go out together
    // A query runs when awaited (or then-ed): start them in this order.
    const first = sql`select pg_sleep(${0})`.then((rows) => rows);
    const started = Date.now();
    const silent = sql`select pg_sleep(${30})`.then(() => undefined, (error: unknown) => error);
    await first;
    const error = await within(10_000, "the silent query to fail", silent);
    expect(error).toMatchObject({ code: "ETIMEDOUT" });
    expect(Date.now() - started).toBeLessThan(1000 + 2000);
    // And the pool goes on. (A query made before the dropped socket's close event is
    // rejected with CONNECTION_CLOSED, a transient error: pgtide's calls retry it.)
    const next = (): Promise<unknown> => sql`select 1 as one`.then((rows) => [...rows], (e: { code?: string }) => (e.code === "CONNECTION_CLOSED" ? next() : Promise.reject(e)));
    expect(await within(5000, "a query after the drop", next())).toEqual([{ one: 1 }]);
  });

  it("leaves an idle connection alone however long it is quiet", async () => {
    const sql = watched(300);
    const [before] = await sql`select pg_backend_pid() as pid`;
    // Nothing is owed now: nothing may happen. Waiting is the point of this test.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const [after] = await sql`select pg_backend_pid() as pid`;
    expect(after).toEqual(before);
  });

  it("counts a startup, a result of many rows and a failed query right", async () => {
    const sql = watched(2000);
    const rows = await sql`select i, repeat('x', 100) as pad from generate_series(1, 20000) i`;
    expect(rows.length).toBe(20000);
    await expect(sql`select 1 / 0`).rejects.toMatchObject({ code: "22012" });
    const [{ pid }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
    await new Promise((resolve) => setTimeout(resolve, 2500)); // past quietMs, owing nothing
    const [again] = await sql`select pg_backend_pid() as pid`;
    expect(again?.pid).toBe(pid);
  });
});

/** One protocol message: a type byte, a length counting itself, a body. */
const message = (type: number, body: number) => {
  const m = Buffer.alloc(5 + body, 0x61);
  m[0] = type;
  m.writeInt32BE(4 + body, 1);
  return m;
};
const startup = () => {
  const m = Buffer.alloc(20, 0);
  m.writeInt32BE(20, 0);
  m.writeInt32BE(196608, 4);
  return m;
};
/** Feeds `whole` in pieces cut at `cuts` (fractions of its length). */
const inPieces = (whole: Buffer, cuts: number[], feed: (b: Buffer) => void) => {
  const at = [...new Set(cuts.map((c) => Math.floor(c * whole.length)))].sort((a, b) => a - b);
  let from = 0;
  for (const to of [...at, whole.length]) {
    if (to > from) feed(whole.subarray(from, to));
    from = to;
  }
};

describe("the protocol counter", () => {
  it("owes one answer per Sync, Query and startup, however the bytes are cut", () => {
    const typed = fc.record({ type: fc.constantFrom(0x53, 0x51, 0x50, 0x42, 0x45, 0x44, 0x58), body: fc.nat(300) });
    fc.assert(
      fc.property(fc.array(typed, { maxLength: 40 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true })), fc.array(fc.double({ min: 0, max: 1, noNaN: true })), (messages, outCuts, inCuts) => {
        const counter = new ProtocolCounter();
        const out = Buffer.concat([startup(), ...messages.map((m) => message(m.type, m.body))]);
        inPieces(out, outCuts, (b) => counter.sent(b));
        const owed = 1 + messages.filter((m) => m.type === 0x53 || m.type === 0x51).length;
        expect(counter.waiting).toBe(true);
        // The server's answers: rows, notices, then one ReadyForQuery per owed answer.
        const answers = Buffer.concat(
          Array.from({ length: owed }, (_, i) => [message(0x44, i * 37 % 500), message(0x4e, 3), message(0x43, 10), message(0x5a, 1)]).flat(),
        );
        const last = answers.length - 6; // the final ReadyForQuery's first byte
        inPieces(answers.subarray(0, last), inCuts, (b) => counter.received(b));
        expect(counter.waiting).toBe(true);
        counter.received(answers.subarray(last));
        expect(counter.waiting).toBe(false);
      }),
    );
  });

  it("owes nothing after a cancel request, and something after a Flush until bytes come", () => {
    const counter = new ProtocolCounter();
    const cancel = Buffer.alloc(16);
    cancel.writeInt32BE(16, 0);
    cancel.writeInt32BE(80877102, 4);
    counter.sent(cancel);
    expect(counter.waiting).toBe(false);
    const described = new ProtocolCounter();
    described.sent(startup());
    described.received(message(0x5a, 1));
    described.sent(Buffer.concat([message(0x50, 20), message(0x44, 6), message(0x48, 0)]));
    expect(described.waiting).toBe(true);
    described.received(message(0x74, 6));
    expect(described.waiting).toBe(false);
  });
});
