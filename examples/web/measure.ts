// Measures writeStream → token in the page's DOM, with the demo served to headless
// Chromium: three answers, every token timed by the page (the token carries the time
// writeStream was called; the page subtracts it once the text is in the DOM).
//
//   DATABASE_URL=postgres://… npx tsx examples/web/measure.ts
//   npx tsx examples/web/measure.ts                 (embedded Postgres in a temp dir)
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import postgres from "postgres";
import { chromium } from "playwright-core";
import { Engine } from "../../src/index.js";
import { startDemoServer } from "./server.js";

const RUNS = 3;
const SKIP = 5; // the first tokens of a run are written before the page's EventSource connects

const url = process.env.DATABASE_URL;
const schema = `measure_${process.pid}`;
const dir = url ? undefined : await mkdtemp(path.join(tmpdir(), "pgtide-measure-"));
if (dir) await chmod(dir, 0o755); // run as root, the embedded Postgres runs as "postgres"
const engine = await Engine.open(url ? { schema } : { schema, dataDir: path.join(dir!, "pgdata") });
const demo = await startDemoServer({ engine, port: 0 });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});

const pct = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
const all: number[] = [];
try {
  for (let run = 1; run <= RUNS; run++) {
    const page = await browser.newPage();
    await page.goto(demo.url);
    await page.fill("#prompt", `measurement ${run}`);
    await page.click("button[type=submit]");
    await page.waitForFunction(`document.getElementById("answer").dataset.state === "done"`, null, { timeout: 60_000 });
    const latencies = ((await page.evaluate("demo.latencies")) as number[]).slice(SKIP);
    const sorted = [...latencies].sort((a, b) => a - b);
    console.log(`answer ${run}: ${sorted.length} tokens, p50 ${pct(sorted, 0.5).toFixed(1)} ms, p99 ${pct(sorted, 0.99).toFixed(1)} ms`);
    all.push(...latencies);
    await page.close();
  }
  const sorted = all.sort((a, b) => a - b);
  console.log(
    `writeStream → page (${url ? "DATABASE_URL" : "embedded Postgres"}): ${sorted.length} tokens, ` +
      `p50 ${pct(sorted, 0.5).toFixed(1)} ms, p90 ${pct(sorted, 0.9).toFixed(1)} ms, p99 ${pct(sorted, 0.99).toFixed(1)} ms`,
  );
} finally {
  await browser.close();
  await demo.close();
  await engine.close();
  if (url) {
    const sql = postgres(url, { onnotice: () => {} });
    await sql.unsafe(`drop schema "${schema}" cascade`);
    await sql.end();
  }
  if (dir) await rm(dir, { recursive: true, force: true });
}
