// A workflow "generates" tokens from a fake model and streams them, plus a progress
// stream; a reader in the same process prints the tokens as they arrive under a
// progress bar, then reports write→read latency.
//
//   npm run demo                      embedded Postgres in .pgtide/pgdata
//   DATABASE_URL=postgres://… npm run demo
import { setTimeout as sleep } from "node:timers/promises";
import { Engine } from "../src/index.js";

interface Token { text: string; at: number }
interface Progress { done: number; total: number; label: string }

const PARAGRAPH = [
  "pgtide runs durable workflows on nothing but Postgres.",
  "A workflow appends values to named streams, and each append is committed with the steps that produced it.",
  "A trigger sends NOTIFY when entries land, so readers wake at once instead of polling.",
  "Readers see a stream as an async iterator that starts at any offset and ends at the close.",
  "If the process dies, recovery replays the recorded steps and writes nothing twice.",
  "Many appends share one transaction, and one notification per stream, because Postgres serialises every commit that sent a NOTIFY.",
  "A reader that reconnects asks again from its last offset, so it never loses an entry or sees one twice.",
  "That makes it a good fit for LLM token streams and for progress bars like the one below this text.",
];
const TOKEN_INTERVAL_MS = 20; // ≈ 50 tokens/s, a typical model's pace
const total = PARAGRAPH.reduce((n, s) => n + s.split(" ").length, 0);

// Epoch milliseconds with sub-millisecond precision (Date.now() rounds to 1 ms).
const now = () => performance.timeOrigin + performance.now();

// The "model": deterministic, no network; a real one would be called inside the step.
// Like a tokenizer's output, each word carries its leading space.
const fakeModel = (sentence: string): string[] => sentence.split(" ").map((word) => ` ${word}`);

const engine = await Engine.open(); // DATABASE_URL if set, else the embedded Postgres

const generate = engine.workflow("generate", async (ctx) => {
  let done = 0;
  const t0 = now();
  for (const [i, sentence] of PARAGRAPH.entries()) {
    // The step's output (the sentence's tokens) is recorded: a recovered run replays it
    // instead of calling the model again.
    const tokens = await ctx.step(`sentence-${i + 1}`, () => fakeModel(sentence));
    const label = `sentence ${i + 1}/${PARAGRAPH.length}`;
    for (const text of tokens) {
      done++;
      await Promise.all([
        ctx.writeStream<Token>("tokens", { text, at: now() }),
        ctx.writeStream<Progress>("progress", { done, total, label }),
      ]);
      // Pace the fake model on a fixed schedule, so write time does not slow it down.
      await sleep(Math.max(0, t0 + done * TOKEN_INTERVAL_MS - now()));
    }
  }
  await ctx.writeStream<Progress>("progress", { done, total, label: "done" });
  return done; // finishing closes both streams, which ends the readers below
});

// On a terminal: tokens flow inline, wrapped by hand, with the bar redrawn on the line
// under them. Piped: whole lines only, so the two readers never split each other's output.
const tty = process.stdout.isTTY;
const width = Math.min(process.stdout.columns ?? 80, 100) - 1;
let column = 0;
let bar = "";
const drawBar = ({ done, total, label }: Progress) => {
  const filled = Math.round((done / total) * 30);
  const percent = String(Math.round((done / total) * 100)).padStart(3);
  return `[${"#".repeat(filled)}${"-".repeat(30 - filled)}] ${percent}%  ${done}/${total}  ${label}`.slice(0, width);
};
let line = "";
const showToken = (text: string) => {
  if (!tty) {
    line += text;
    if (text.endsWith(".")) {
      process.stdout.write(`${line.trimStart()}\n`);
      line = "";
    }
    return;
  }
  const wrap = column + text.length > width;
  const shown = wrap || column === 0 ? text.trimStart() : text;
  // Clear the bar, go up to the end of the text, write, come back down, redraw the bar.
  process.stdout.write(`\r\x1b[2K\x1b[1A\x1b[${column + 1}G${wrap ? "\n" : ""}${shown}\n\x1b[2K${bar}`);
  column = wrap ? shown.length : column + shown.length;
};
let lastLabel = "";
const showProgress = (p: Progress) => {
  bar = drawBar(p);
  if (tty) process.stdout.write(`\r\x1b[2K${bar}`);
  else if (p.label !== lastLabel) process.stdout.write(`${bar}\n`);
  lastLabel = p.label;
};

const started = now();
const latencies: number[] = [];
let count: number;
try {
  const handle = await generate.start(undefined, { workflowId: `demo-${Date.now()}` });
  if (tty) process.stdout.write("\n"); // one line for the text, the bar goes below it
  await Promise.all([
    (async () => {
      for await (const token of engine.readStreamAsync<Token>(handle.workflowId, "tokens")) {
        latencies.push(now() - token.at);
        showToken(token.text);
      }
    })(),
    (async () => {
      for await (const p of engine.readStreamAsync<Progress>(handle.workflowId, "progress")) showProgress(p);
    })(),
  ]);
  count = await handle.getResult();
} finally {
  await engine.close(); // also stops the embedded Postgres, so the process can exit
}
const elapsed = (now() - started) / 1000;

const sorted = latencies.sort((a, b) => a - b);
const pct = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
if (tty) process.stdout.write("\n");
console.log(
  `\n${count} tokens in ${elapsed.toFixed(2)} s (${(count / elapsed).toFixed(1)} tokens/s); ` +
  `write→read latency p50 ${pct(0.5).toFixed(1)} ms, p99 ${pct(0.99).toFixed(1)} ms`,
);
