// Scenario 6: what a user would pick instead, same run, same machine.
// - Redis Streams (XADD + XREAD BLOCK, ioredis): latency at 500/s, and throughput with
//   the shape of scenario 2 (100 producers each awaiting 1,000 XADDs, one reader
//   following all the streams). pgtide is measured again here, alternating with Redis.
// - A polling reader: pgtide's writes, read by one SELECT every 50 ms instead of NOTIFY.
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { openEngine, pgtideLatency, pgtideThroughput } from "./probes.js";
import {
  dist, latencyRow, paced, rateRow, rawSql, single, suffix, within, type Row, type Scenario, type Target,
} from "./support.js";

const RATE = 500;

/** The machine's Redis (BENCH_REDIS_PORT overrides the port, to try the skip). */
async function redisAvailable(): Promise<Redis | undefined> {
  const port = Number(process.env.BENCH_REDIS_PORT ?? 6379);
  const client = new Redis({ host: "127.0.0.1", port, lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.ping();
    return client;
  } catch {
    client.disconnect();
    return undefined;
  }
}

type Entries = [id: string, fields: string[]][];
type XReadReply = [key: string, entries: Entries][] | null;

/** XADD at `rate` from one client, XREAD BLOCK on another; latency per entry. */
async function redisLatency(producer: Redis, consumer: Redis, key: string, count: number, warmup: number): Promise<Float64Array> {
  const total = warmup + count;
  const sent = new Float64Array(total);
  const latency = new Float64Array(count).fill(NaN);
  let n = 0;
  const reading = (async () => {
    let last = "0-0";
    while (n < total) {
      const reply = (await consumer.xread("COUNT", 1000, "BLOCK", 5000, "STREAMS", key, last)) as XReadReply;
      if (!reply) throw new Error("XREAD BLOCK timed out");
      const now = performance.now();
      for (const [id, fields] of reply[0]![1]) {
        const i = Number(fields[1]);
        if (i >= warmup) latency[i - warmup] = now - sent[i]!;
        last = id;
        n++;
      }
    }
  })();
  const writes: Promise<unknown>[] = [];
  await paced(RATE, total, (i) => {
    sent[i] = performance.now();
    writes.push(producer.xadd(key, "*", "i", String(i)));
  });
  await within(30_000, "XADDs", Promise.all(writes));
  await within(30_000, "XREAD reader", reading);
  return latency;
}

/** 100 producers each await `per` XADDs back to back; one reader follows every stream. */
async function redisThroughput(producer: Redis, consumer: Redis, prefix: string, streams: number, per: number): Promise<number> {
  const keys = Array.from({ length: streams }, (_, s) => `${prefix}:${s}`);
  const total = streams * per;
  let delivered = 0;
  let stop = false;
  const reading = (async () => {
    const last = keys.map(() => "0-0");
    while (delivered < total && !stop) {
      const reply = (await consumer.xread("COUNT", 1000, "BLOCK", 1000, "STREAMS", ...keys, ...last)) as XReadReply;
      for (const [key, entries] of reply ?? []) {
        last[keys.indexOf(key)] = entries.at(-1)![0];
        delivered += entries.length;
      }
    }
  })();
  const t0 = performance.now();
  await Promise.all(keys.map(async (key) => {
    for (let i = 0; i < per; i++) await producer.xadd(key, "*", "v", "tok");
  }));
  const appended = performance.now();
  try {
    await within(30_000, "XREAD reader", reading);
  } finally {
    stop = true;
  }
  return total / ((appended - t0) / 1000);
}

export const peers: Scenario = {
  id: "peers",
  title: "6. Peers: Redis Streams, and a polling reader",
  timeout: { quick: 45, full: 120 },
  async run(ctx) {
    const started = performance.now();
    const count = ctx.quick ? 750 : 2500;
    const warmup = 100;
    const per = ctx.quick ? 200 : 1000;
    const rows: Row[] = [];
    const targets: Target[] = [];
    const notes: string[] = [];
    const writer = await openEngine(ctx);
    const reader = await openEngine(ctx);
    const poller = rawSql(ctx.url, ctx.schema, 1, "poller");
    const redis = await redisAvailable();
    const consumer = redis?.duplicate();
    consumer?.on("error", () => {});
    const prefix = `pgtide-bench:${ctx.schema}:${suffix()}`;
    try {
      // Not counted: JIT and first-use costs.
      await pgtideLatency({ writer, reader, rate: RATE, count: 200, warmup: 0, timeoutMs: 30_000 });

      // A reader that polls: one SELECT of what follows its offset every 50 ms.
      const polled = await pgtideLatency({
        writer, reader, rate: RATE, count, warmup, timeoutMs: 60_000,
        follow: async (workflowId, total, got) => {
          for (let next = 0; next < total;) {
            await sleep(50);
            const rows = await poller`
              select "offset" from stream_entries
              where workflow_id = ${workflowId} and key = 'tokens' and "offset" >= ${next} and not closed
              order by "offset"`;
            for (const row of rows) {
              got(row.offset as number);
              next = (row.offset as number) + 1;
            }
          }
        },
      });
      const ours = await pgtideLatency({ writer, reader, rate: RATE, count, warmup, timeoutMs: 60_000 });
      rows.push(latencyRow("pgtide write → read at 500/s (NOTIFY)", dist(ours.latency), {
        label: "polling reader, one SELECT every 50 ms", value: dist(polled.latency),
      }));

      if (!redis || !consumer) {
        notes.push("Redis did not answer at 127.0.0.1:6379: the Redis Streams comparison was skipped (ioredis, XADD + XREAD BLOCK).");
      } else {
        await redisLatency(redis, consumer, `${prefix}:warm`, 200, 0);
        const theirs = await redisLatency(redis, consumer, `${prefix}:lat`, count, warmup);
        const again = await pgtideLatency({ writer, reader, rate: RATE, count, warmup, timeoutMs: 60_000 });
        const latencyRowRedis = latencyRow("pgtide write → read at 500/s", dist([...ours.latency, ...again.latency]), {
          label: "Redis Streams XADD → XREAD BLOCK at 500/s", value: dist(theirs),
        });
        rows.push(latencyRowRedis);

        const redisRate = await redisThroughput(redis, consumer, `${prefix}:tp`, 100, per);
        const tp = await pgtideThroughput({ writer, reader, workflows: 100, perWorkflow: per, timeoutMs: 60_000 });
        rows.push(rateRow(`pgtide append, 100 × ${per.toLocaleString("en-US")} awaited writes`, single(tp.appendRate), {
          label: "Redis Streams, 100 producers × awaited XADD", value: single(redisRate),
        }));
        const aof = ((await redis.config("GET", "appendonly")) as string[])[1];
        const fsync = ((await redis.config("GET", "appendfsync")) as string[])[1];
        notes.push(
          `pgtide/Redis: latency p50 ${latencyRowRedis.ratio!.median.toFixed(2)}×, p99 ${latencyRowRedis.ratio!.p99!.toFixed(2)}×; throughput ${(tp.appendRate / redisRate).toFixed(2)}×. ` +
            `Not like for like on durability: this Redis has appendonly=${aof} (appendfsync=${fsync}), so an acknowledged XADD is in memory only; a pgtide write is acknowledged after its commit is flushed to disk (synchronous_commit=on).`,
        );
      }
    } finally {
      if (redis) {
        const keys = await redis.keys(`${prefix}:*`).catch(() => [] as string[]);
        if (keys.length > 0) await redis.del(...keys).catch(() => {});
      }
      redis?.disconnect();
      consumer?.disconnect();
      await Promise.allSettled([writer.close(), reader.close(), poller.end({ timeout: 1 })]);
    }
    return {
      id: this.id,
      title: this.title,
      what: `Latency: ${count} measured writes at ${RATE}/s after ${warmup} warm-up, each system writing and reading in this process. ` +
        `Redis: XADD from one ioredis client, XREAD BLOCK on another; throughput with scenario 2's shape (100 producers, awaited writes, ${per.toLocaleString("en-US")} each, one XREAD reader on all streams). ` +
        "Polling: pgtide's own writes, read by a loop of sleep 50 ms + SELECT of the rows after the reader's offset.",
      rows,
      targets,
      notes,
      seconds: (performance.now() - started) / 1000,
    };
  },
};
