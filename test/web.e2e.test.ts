// The web demo in headless Chromium (@sparticuz/chromium's, driven by playwright-core;
// nothing from apt): tokens arrive in order, a reload mid-answer resumes it with no
// duplicate and no gap, a second tab follows the same stream, the progress bars reach
// 100%. Saves docs/demo.png.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fakeAnswer } from "../examples/web/model.js";
import { startDemoServer, type DemoServer } from "../examples/web/server.js";
import { launchChromium } from "./support/chromium.js";
import { openEngine } from "./support/engines.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const PROMPT = `Why stream <tokens> & "progress" through Postgres?`;

interface Seen {
  text: string;
  state: string;
  offsets: number[];
  resumedAfter: number;
  anomalies: unknown[];
  latencies: number[];
}

let demo: DemoServer;
let browser: Browser;

beforeAll(async () => {
  const engine = await openEngine();
  demo = await startDemoServer({ engine, port: 0 });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await demo?.close();
});

// Page code is passed as strings: the project's types have no DOM (lib ES2024 only).
const seen = (page: Page): Promise<Seen> =>
  page.evaluate(`({
    text: document.getElementById("answer").textContent,
    state: document.getElementById("answer").dataset.state,
    offsets: demo.offsets.tokens,
    resumedAfter: demo.resumedAfter.tokens,
    anomalies: demo.anomalies,
    latencies: demo.latencies,
  })`);

const stateIs = (page: Page, id: string, state: string) =>
  page.waitForFunction(`document.getElementById(${JSON.stringify(id)}).dataset.state === ${JSON.stringify(state)}`, null, { timeout: 20_000 });

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

const percentile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
};

describe("the web demo", () => {
  it("streams the answer live, resumes it across a reload, and fills the job's bars", async () => {
    const tokens = fakeAnswer(PROMPT);
    const expected = tokens.join("");
    const page = await browser.newPage({ viewport: { width: 1100, height: 640 } });
    await page.goto(demo.url);
    await page.fill("#prompt", PROMPT);
    await page.click("button[type=submit]");

    // In order while it streams: each text seen is a prefix of the answer, offsets 0, 1, 2, …
    const prefixes: string[] = [];
    let first: Seen;
    do {
      const shown = prefixes.at(-1)?.length ?? 0;
      await page.waitForFunction(`document.getElementById("answer").textContent.length > ${shown}`, null, { timeout: 10_000 });
      first = await seen(page);
      prefixes.push(first.text);
    } while (first.offsets.length < 30);
    for (const text of prefixes) expect(expected.startsWith(text), JSON.stringify(text)).toBe(true);
    expect(first.state).toBe("streaming"); // still mid-answer: the reload below happens mid-stream
    expect(first.resumedAfter).toBe(-1);
    expect(first.offsets).toEqual(range(0, first.offsets.length));
    expect(first.anomalies).toEqual([]);
    const url = page.url();
    expect(url).toMatch(/#run=[0-9a-f]+$/);

    // A second tab on the same address follows the same stream.
    const second = await browser.newPage({ viewport: { width: 1100, height: 640 } });
    await second.goto(url);

    // Reload mid-answer: the page shows what it had, and resumes after its last offset.
    const atReload = await seen(page);
    await page.reload();
    await stateIs(page, "answer", "done");
    const resumed = await seen(page);
    expect(resumed.resumedAfter).toBeGreaterThanOrEqual(atReload.offsets.length - 1);
    expect(resumed.resumedAfter).toBeLessThan(tokens.length - 1);
    expect(resumed.offsets).toEqual(range(resumed.resumedAfter + 1, tokens.length));
    expect(resumed.anomalies).toEqual([]);
    expect(resumed.text).toBe(expected);

    await stateIs(second, "answer", "done");
    const other = await seen(second);
    expect(other.offsets).toEqual(range(0, tokens.length));
    expect(other.text).toBe(expected);

    // The job's three bars reach 100%.
    await stateIs(page, "job", "done");
    for (const label of ["download", "process", "upload"]) {
      const full = await page.evaluate(`(b => b.value === b.max && b.max > 1)(document.getElementById("bar-${label}"))`);
      expect(full, label).toBe(true);
      expect(await page.locator(`#pct-${label}`).textContent()).toBe("100%");
    }

    // writeStream → token in the page's DOM, over the tokens of the first load.
    const p50 = percentile(atReload.latencies, 0.5);
    const p99 = percentile(atReload.latencies, 0.99);
    console.log(`writeStream → page: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms over ${atReload.latencies.length} tokens`);
    expect(p50).toBeLessThan(1000);

    await mkdir(path.join(ROOT, "docs"), { recursive: true });
    await page.screenshot({ path: path.join(ROOT, "docs/demo.png") });
    await Promise.all([page.close(), second.close()]);
  });

  it("refuses an empty prompt, and streams of workflows that are not the demo's", async () => {
    const empty = await fetch(new URL("/api/runs", demo.url), { method: "POST", body: JSON.stringify({ prompt: " " }) });
    expect(empty.status).toBe(400);
    const foreign = await fetch(new URL("/api/streams/other-workflow/tokens", demo.url));
    expect(foreign.status).toBe(403);
  });
});
