// The demo's two workflows: an answer streamed token by token from the fake model, and a
// backend job whose three phases report progress.
import { setTimeout as sleep } from "node:timers/promises";
import type { Engine } from "../../src/index.js";
import { fakeAnswer } from "./model.js";

/** What the page receives for each token: the text, and when writeStream was called. */
export interface Token {
  text: string;
  /** Epoch milliseconds, sub-millisecond precision: the page measures write → screen from it. */
  at: number;
}

/** ≈ 40 tokens/s, a typical model's pace. */
export const TOKEN_INTERVAL_MS = 25;

/** The job's phases: label, units, time per unit (each phase takes about a second). */
export const PHASES = [
  ["download", 40, 25],
  ["process", 25, 40],
  ["upload", 20, 50],
] as const;

const now = () => performance.timeOrigin + performance.now();

export function registerDemoWorkflows(engine: Engine) {
  const answer = engine.workflow("demo-answer", async (ctx, input: { prompt: string }) => {
    // The model's output is a step: a recovered run replays it instead of asking again.
    const tokens = await ctx.step("model", () => fakeAnswer(input.prompt));
    const t0 = now();
    for (const [i, text] of tokens.entries()) {
      // A fixed schedule, so the time a write takes does not slow the pace down.
      await sleep(Math.max(0, t0 + i * TOKEN_INTERVAL_MS - now()));
      await ctx.writeStream<Token>("tokens", { text, at: now() });
    }
    return tokens.length; // returning closes the stream: the page's EventSource gets `event: close`
  });

  const job = engine.workflow("demo-job", async (ctx) => {
    for (const [label, total, ms] of PHASES) {
      for (let done = 0; done <= total; done++) {
        await ctx.writeProgress("progress", { done, total, label });
        if (done < total) await sleep(ms);
      }
    }
  });

  return { answer, job };
}
