// postgres.js 3.4.9, as patched by patches/postgres+3.4.9.patch. Each test runs the real
// driver against a real Postgres (or a real TCP peer) and fails without the patch:
// - a query that failed mid-result left its row counter behind, so the next query on
//   that connection resolved with leading holes (porsager/postgres issues 1119, 1181);
// - a FATAL error was replayed onto the first query after the reconnect (issue 1223);
// - a connection closed under a query made end() wait out its timeout;
// - a server that closes during startup without an error was reconnected to at once,
//   for ever, and the query never settled;
// - a connection closed under a transaction made begin()'s rollback throw a TypeError
//   from a setImmediate: an uncaught exception (and, rejected instead, the rollback left
//   the connection in the pool's full queue: the next query waited for ever);
// - a connection closed while it asked for the array types (each new connection does)
//   left that internal query's rejection unhandled: a crash under Node's defaults;
// - a query cancelled while its connection was being made left that connection in the
//   connecting queue for good: with max 1, every later query waited for ever.
// - a query queued when end() was called made its connection connect again after end()
//   (and a reconnect waiting out its delay did too): a pool its owner closed kept one.
// - a query the pool pipelined onto a connection between its socket's error and its close
//   was never settled (a killed backend written to: getResult hung after a cancel);
// - a close with a write still queued kept the cleared write timer: on the next
//   connection no write under 1 kB was ever sent, its startup included.
import net from "node:net";
import postgres from "postgres";
import { afterEach, describe, expect, it } from "vitest";
import { admin, databaseUrl, within } from "./support/engines.js";

const opened: postgres.Sql[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((sql) => sql.end({ timeout: 1 })));
});

function oneConnection(): postgres.Sql {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, connection: { application_name: "test:sparse" } });
  opened.push(sql);
  return sql;
}

/** One connection on sockets made here (postgres.js's `socket` option), the latest at hand. */
function withOwnSockets(): { sql: postgres.Sql; socket: () => net.Socket } {
  let latest: net.Socket | undefined;
  const sql = postgres(databaseUrl, {
    max: 1,
    onnotice: () => {},
    connect_timeout: 30,
    socket: ({ host, port }: { host: string[]; port: number[] }) => (latest = net.connect(port[0]!, host[0]!)),
  } as postgres.Options<{}>);
  opened.push(sql);
  return { sql, socket: () => latest! };
}

/** Every index of the array holds a row: no hole, nothing undefined. */
function holes(rows: readonly unknown[]): number {
  let n = 0;
  for (let i = 0; i < rows.length; i++) if (!(i in rows) || rows[i] === undefined) n++;
  return n;
}

describe("postgres.js after a query fails mid-result", () => {
  it("gives the next pipelined query a whole result (issue 1181: an error after some rows)", async () => {
    const sql = oneConnection();
    // Three rows stream out, then the fourth divides by zero.
    const failing = sql`select i, 1 / (4 - i) as boom from generate_series(1, 10) i`.then(
      () => undefined,
      (error: unknown) => error,
    );
    const next = sql`select x from generate_series(1, 5) x`;
    expect(String(await failing)).toMatch(/division by zero/);
    const rows = await next;
    expect(holes(rows)).toBe(0);
    expect(rows.map((r) => r.x)).toEqual([1, 2, 3, 4, 5]);
  });

  it("gives the next query a whole result (issue 1119: an error after some rows, not pipelined)", async () => {
    const sql = oneConnection();
    await expect(sql`select i, 1 / (4 - i) as boom from generate_series(1, 10) i`).rejects.toThrow(/division by zero/);
    const rows = await sql`select x from generate_series(1, 5) x`;
    expect(holes(rows)).toBe(0);
    expect(rows.length).toBe(5);
  });

  it("gives the first query after a terminated connection a whole result (FATAL 57P01 mid-result)", async () => {
    const sql = oneConnection();
    const [{ pid }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
    // 49 rows of 1 kB (past the server's 8 kB send buffer, so they reach us), then row 50
    // sleeps in the select list while the backend is killed.
    const streaming = sql`select i, repeat('x', 1000) as pad, case when i = 50 then pg_sleep(30) end from generate_series(1, 100) i`.then(
      () => undefined,
      (error: unknown) => error,
    );
    await waitUntil(async () => {
      const [row] = await admin`select wait_event from pg_stat_activity where pid = ${pid}`;
      return row?.wait_event === "PgSleep";
    });
    await admin`select pg_terminate_backend(${pid})`;
    expect((await streaming) as { code?: string }).toMatchObject({ code: expect.stringMatching(/57P01|CONNECTION_CLOSED/) });
    const rows = await sql`select x from generate_series(1, 5) x`;
    expect(holes(rows)).toBe(0);
    expect(rows.map((r) => r.x)).toEqual([1, 2, 3, 4, 5]);
  });
});

/** A connection to the test Postgres for `client`, the two closed together. */
function linkedToPostgres(client: net.Socket): net.Socket {
  const target = new URL(databaseUrl);
  const upstream = net.connect(Number(target.port || 5432), target.hostname);
  for (const socket of [client, upstream]) {
    socket.on("error", () => {});
    socket.on("close", () => {
      client.destroy();
      upstream.destroy();
    });
  }
  return upstream;
}

async function waitUntil(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the backend to stream rows");
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe("postgres.js after a connection closes under a query", () => {
  it("ends at once: the failed query is not left waiting on the closed connection", async () => {
    const sql = oneConnection();
    const [{ pid }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
    const sleeping = sql`select pg_sleep(30)`.then(() => undefined, (error: unknown) => error);
    await waitUntil(async () => {
      const [row] = await admin`select wait_event from pg_stat_activity where pid = ${pid}`;
      return row?.wait_event === "PgSleep";
    });
    await admin`select pg_terminate_backend(${pid})`;
    expect(await sleeping).toMatchObject({ code: expect.stringMatching(/57P01|CONNECTION_CLOSED/) });
    // end() used to wait for that query until its timeout (here 5 s) destroyed the connection.
    const started = Date.now();
    await sql.end({ timeout: 5 });
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe("postgres.js when a server closes during startup without an error", () => {
  it("rejects the query with CONNECTION_CLOSED instead of reconnecting for ever", async () => {
    let accepted = 0;
    // A peer that reads the startup message, then closes cleanly (a proxy with no backend).
    const server = net.createServer((socket) => {
      accepted++;
      socket.once("data", () => socket.end());
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    const sql = postgres(`postgres://u@127.0.0.1:${port}/db`, { max: 1, onnotice: () => {}, connect_timeout: 30 });
    try {
      const error = await within(5000, "the query to fail", sql`select 1`.then(() => undefined, (e: unknown) => e));
      expect(error).toMatchObject({ code: "CONNECTION_CLOSED" });
      expect(accepted).toBeLessThan(5);
    } finally {
      await sql.end({ timeout: 0 });
      server.close();
    }
  });
});

describe("postgres.js when a connection closes inside a transaction", () => {
  it("rejects the transaction, throws nothing uncaught, and the pool answers at once afterwards (20 times: the close races the rollback)", async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on("uncaughtException", onUncaught);
    try {
      for (let round = 0; round < 20; round++) {
        const sql = oneConnection();
        const failed = await sql
          .begin(async (tx) => {
            const [{ pid }] = (await tx`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
            await admin`select pg_terminate_backend(${pid})`;
            await tx`select pg_sleep(0.01)`; // the connection is gone under the transaction
          })
          .then(() => undefined, (e: unknown) => e);
        expect(failed).toMatchObject({ code: expect.stringMatching(/57P01|CONNECTION_CLOSED/) });
        // begin()'s rollback wrote from a setImmediate: let those turns of the event loop pass.
        for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
        // Its one connection must not be left marked busy: the next query is answered at once.
        expect(await within(2000, `round ${round}: the next query`, sql`select 1 as one`)).toEqual([{ one: 1 }]);
        expect(uncaught).toEqual([]);
      }
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});

describe("postgres.js when a connection closes while it fetches the array types", () => {
  it("leaves no unhandled rejection, and the query still gets its answer on the next connection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    let cut = false;
    // Forwards to Postgres, and cuts the first connection that asks for the array types.
    const server = net.createServer((client) => {
      const upstream = linkedToPostgres(client);
      client.on("data", (chunk: Buffer) => {
        if (!cut && chunk.includes("typcategory")) {
          cut = true;
          client.resetAndDestroy(); // a TCP reset: the driver sees an error, not a clean close
          return;
        }
        upstream.write(chunk);
      });
      upstream.pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = new URL(databaseUrl);
    url.hostname = "127.0.0.1";
    url.port = String((server.address() as net.AddressInfo).port);
    const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
    try {
      const first = await within(10_000, "the first query", sql`select 1 as one`.then((rows) => rows, (e: unknown) => e));
      expect(cut).toBe(true);
      // The first query may fail with the closed connection; the next one is answered.
      if (Array.isArray(first)) expect(first).toEqual([{ one: 1 }]);
      else expect(first).toMatchObject({ code: expect.stringMatching(/^(ECONNRESET|CONNECTION_CLOSED)$/) });
      expect(await within(10_000, "the next query", sql`select 2 as two`)).toEqual([{ two: 2 }]);
      for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      await sql.end({ timeout: 1 });
      server.close();
    }
  });
});

describe("postgres.js when the query that opened a connection is cancelled before it connects", () => {
  it("hands the connection to the pool, so the next query runs", async () => {
    let letThrough!: () => void;
    const held = new Promise<void>((resolve) => (letThrough = resolve));
    // Forwards to Postgres, but holds each connection's first bytes until released.
    const server = net.createServer((client) => {
      const upstream = linkedToPostgres(client);
      client.pause();
      void held.then(() => {
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = new URL(databaseUrl);
    url.hostname = "127.0.0.1";
    url.port = String((server.address() as net.AddressInfo).port);
    const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
    try {
      const first = sql`select 1 as one`;
      const firstOutcome = first.then(() => "answered", (e: { code?: string }) => e.code);
      await new Promise((resolve) => setImmediate(resolve)); // it has started connecting
      await first.cancel();
      expect(await firstOutcome).toBe("57014");
      letThrough();
      expect(await within(5000, "the next query", sql`select 2 as two`)).toEqual([{ two: 2 }]);
    } finally {
      await sql.end({ timeout: 1 });
      server.close();
    }
  });
});

describe("postgres.js when end() comes while a connection waits to reconnect", () => {
  it("does not connect again afterwards (a pool its owner closed kept a connection)", async () => {
    let accepting = false;
    let connected = 0;
    // Refuses (drops at once) until `accepting`, then forwards to Postgres.
    const server = net.createServer((client) => {
      if (!accepting) {
        client.resetAndDestroy();
        return;
      }
      connected++;
      const upstream = linkedToPostgres(client);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = new URL(databaseUrl);
    url.hostname = "127.0.0.1";
    url.port = String((server.address() as net.AddressInfo).port);
    // A fixed 2 s between attempts: the second query's attempt waits that long.
    const sql = postgres(url.toString(), { max: 1, onnotice: () => {}, backoff: () => 2 });
    try {
      await expect(sql`select 1`).rejects.toMatchObject({ code: "ECONNRESET" });
      const started = Date.now();
      const second = sql`select 2`.catch((e: unknown) => e); // waits for the reconnect delay
      await sql.end({ timeout: 0 });
      expect(await second).toMatchObject({ code: expect.stringMatching(/CONNECTION_(DESTROYED|ENDED)/) });
      expect(Date.now() - started).toBeLessThan(1000); // ended during the delay, not after an attempt
      accepting = true;
      // Nothing announces that something did not happen: give the old delay and a half.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      expect(connected).toBe(0);
    } finally {
      server.close();
    }
  });
});

describe("postgres.js between a connection's error and its close", () => {
  it("settles a query pipelined onto the connection in that window (it waited for ever)", async () => {
    // A socket error (EPIPE, ECONNRESET: a killed backend written to) rejects what the
    // connection holds; 'close' follows a turn of the event loop later. A query the pool
    // pipelined onto the connection in between went to `sent`, and the close, having had
    // an error, rejected nothing: that query never settled.
    const { sql, socket: current } = withOwnSockets();
    const sleep = (s: number) => sql`select pg_sleep(${s})`;
    await sleep(0); // described once, so the next one may have others pipelined behind it
    const [{ pid }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
    const first = sleep(30).then(() => undefined, (error: unknown) => error);
    await waitUntil(async () => {
      const [row] = await admin`select wait_event from pg_stat_activity where pid = ${pid}`;
      return row?.wait_event === "PgSleep";
    });
    const socket = current();
    let pipelined: Promise<unknown> | undefined;
    // Added after the driver's own listener: it runs once the driver has handled the error.
    socket.on("error", () => (pipelined ??= sql`select 1 as one`.then((rows) => rows, (error: unknown) => error)));
    socket.destroy(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }));
    expect(await within(5000, "the first query", first)).toMatchObject({ code: "ECONNRESET" });
    await within(5000, "the error event", new Promise<void>((resolve) => (pipelined ? resolve() : socket.once("close", () => resolve()))));
    expect(pipelined, "a query was made in the window").toBeDefined();
    const outcome = await within(5000, "the query made between error and close", pipelined!);
    expect(outcome).toSatisfy((x: unknown) => Array.isArray(x) || (x as { code?: string }).code !== undefined);
    await admin`select pg_terminate_backend(${pid})`; // still asleep: nobody told it
  });
});

describe("postgres.js when a connection closes with a write still queued", () => {
  it("sends the next connection's startup (a stale write timer held every short write back)", async () => {
    // A query made in one turn is written in the next (setImmediate); a close handled in
    // between cleared that timer but kept it and the unsent bytes. On the new connection
    // every write under 1 kB waited behind the stale timer: the startup was never sent.
    const { sql, socket } = withOwnSockets();
    await sql`select 1`;
    const cut = await new Promise<unknown>((resolve) =>
      setImmediate(() => {
        // Written at the next check phase; the close callback of this turn comes first.
        const queued = sql`select 1`.then(() => undefined, (error: unknown) => error);
        socket().destroy();
        resolve(queued);
      }),
    );
    expect(await within(5000, "the query cut off", cut as Promise<unknown>)).toMatchObject({ code: "CONNECTION_CLOSED" });
    expect(await within(5000, "a query on the next connection", sql`select 2 as two`)).toEqual([{ two: 2 }]);
  });
});
