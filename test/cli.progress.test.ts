// Progress, written with ctx.writeProgress and drawn by `pgtide progress` (a process,
// against a real Postgres): both sides share the { done, total, label? } shape.
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError, type Engine, type Progress } from "../src/index.js";
import { databaseUrl, openEngine, within } from "./support/engines.js";

const ROOT = path.resolve(import.meta.dirname, "..");

let engine: Engine;
beforeAll(async () => {
  engine = await openEngine();
});

function pgtide(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { DATABASE_URL: _, ...env } = process.env;
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), ...args], { cwd: ROOT, env });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return within(20_000, `pgtide ${args.join(" ")}`, once(child, "close").then(([code]) => ({ code: code as number | null, stdout, stderr })));
}

describe("ctx.writeProgress", () => {
  it("writes { done, total, label? } to the stream, keeping only those fields", async () => {
    const wf = engine.workflow("progress-shape", async (ctx) => {
      await ctx.writeProgress("p", { done: 0, total: 3 });
      await ctx.writeProgress("p", { done: 1.5, total: 3, label: "half" });
      await ctx.writeProgress("p", { done: 3, total: 3, label: "", extra: "dropped" } as Progress);
      await ctx.writeProgress("p", { done: 0, total: 0 });
    });
    const handle = await wf.start();
    await handle.getResult();
    expect((await engine.readStream<Progress>(handle.workflowId, "p")).values).toEqual([
      { done: 0, total: 3 },
      { done: 1.5, total: 3, label: "half" },
      { done: 3, total: 3, label: "" },
      { done: 0, total: 0 },
    ]);
  });

  it("refuses a bad progress entry before writing anything, naming the problem", async () => {
    const bad: [unknown, RegExp][] = [
      [null, /progress must be an object \{ done, total, label\? \}, got null/],
      [{ done: 1 }, /progress.total must be a finite non-negative number, got undefined/],
      [{ done: -1, total: 3 }, /progress.done must be a finite non-negative number, got -1/],
      [{ done: NaN, total: 3 }, /progress.done must be a finite non-negative number, got NaN/],
      [{ done: 1, total: Infinity }, /progress.total must be a finite non-negative number, got Infinity/],
      [{ done: "1", total: 3 }, /progress.done must be a finite non-negative number, got "1"/],
      [{ done: 4, total: 3 }, /progress.done \(4\) must not exceed progress.total \(3\)/],
      [{ done: 1, total: 3, label: 7 }, /progress.label must be a string, got 7/],
    ];
    const errors: unknown[] = [];
    const wf = engine.workflow("progress-bad", async (ctx) => {
      for (const [value] of bad) {
        await ctx.writeProgress("p", value as Progress).catch((error: unknown) => errors.push(error));
      }
    });
    const handle = await wf.start();
    await handle.getResult();
    expect(errors).toHaveLength(bad.length);
    for (const [i, [, message]] of bad.entries()) {
      expect(errors[i]).toBeInstanceOf(InvalidArgumentError);
      expect((errors[i] as Error).message).toMatch(message);
    }
    expect(await engine.readStream(handle.workflowId, "p")).toEqual({ values: [], closed: true });
  });
});

describe("pgtide progress", () => {
  it("draws one bar per label, reaches 100% and exits 0 at the close", async () => {
    const wf = engine.workflow("job", async (ctx) => {
      for (const label of ["download", "process", "upload"]) {
        for (let done = 0; done <= 4; done++) await ctx.writeProgress("progress", { done, total: 4, label });
      }
      await ctx.writeStream("progress", "not a progress entry");
    });
    const handle = await wf.start();
    await handle.getResult();
    const run = await pgtide(["progress", handle.workflowId, "progress", "--database-url", databaseUrl, "--schema", engine.schema]);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe('pgtide: entry 15 is not a progress entry { done, total, label? }: "not a progress entry"\n');
    // Piped, cli-progress prints the bars once more when they stop: the final state.
    const final = run.stdout.trimEnd().split("\n").slice(-3);
    expect(final).toEqual([
      `download     [${"█".repeat(40)}] 100% | 4/4`,
      `process      [${"█".repeat(40)}] 100% | 4/4`,
      `upload       [${"█".repeat(40)}] 100% | 4/4`,
    ]);
  });

  it("exits 1 naming the workflow when it does not exist", async () => {
    const run = await pgtide(["progress", "nope", "progress", "--database-url", databaseUrl, "--schema", engine.schema]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^pgtide: workflow "nope" does not exist in schema/);
  });
});
