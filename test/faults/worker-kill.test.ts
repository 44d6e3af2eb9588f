// Scenario 3: the process running a workflow is SIGKILLed again and again. A child
// process runs a 200-step workflow (step i records a side-effect row, then the workflow
// writes i to a stream); at seeded step numbers and phases it is killed, and a fresh
// process recovers the workflow with launch(). Half of the kills stop the worker at an
// exact point first (inside a step after its side effect, after the step, with the
// write in flight, after the write); the other half only tell the test where the worker
// is and let it run on, so the kill lands wherever it lands.
import { expect, it } from "vitest";
import { admin, databaseUrl, openEngine, uniqueSchema } from "../support/engines.js";
import { Child, fixture } from "./support/children.js";
import { prng, scenarioSeed } from "./support/prng.js";
import { faultReport } from "./support/report.js";
import { exact, follow, SequenceChecker } from "./support/sequence.js";
import { deadline } from "./support/wait.js";
import type { Phase, WorkerConfig, WorkerMessage } from "./support/worker.js";

const STEPS = 200;
const KILLS = 22;
const PHASES: Phase[] = ["in-step", "after-step", "write-in-flight", "after-write"];

const report = faultReport(
  3,
  "Worker SIGKILLed 22× during a 200-step workflow",
  `A child process (\`node --import tsx test/faults/support/worker.ts\`) runs a ${STEPS}-step workflow: step i inserts a ` +
    `side-effect row (i, pid), then the workflow writes i to a stream. It is SIGKILLed ${KILLS} times at seeded step ` +
    "numbers, each a few steps past the recorded progress; half of the kills first pause the worker at a seeded phase " +
    "(inside the step after its side effect, after the step, with the stream write in flight, after the write), the " +
    "other half let it run on, so the kill lands wherever it lands. After each kill a fresh process calls launch(). A " +
    "reader in the test process follows the stream across all kills. Checked: the stream holds 0..199 exactly once and " +
    "the close; every step ran; a step ran twice only if it was the one in flight in a killed process (its earlier row " +
    "comes from that pid, and is that pid's last step). Not scaled.",
);

it(`a ${STEPS}-step workflow survives ${KILLS} SIGKILLs: stream exact, only in-flight steps re-run`, { timeout: 180_000 }, async () => {
  const seed = scenarioSeed(0x3c0ffee);
  report.seed(seed);
  const rng = prng(seed);
  const schema = uniqueSchema("faults_kill");
  const engine = await openEngine({ schema });
  await admin.unsafe(`create table "${schema}".side_effects (step int not null, pid int not null, id bigserial primary key)`);
  const workflowId = "steps-1";
  const config = (mode: "start" | "recover", pauseAt?: { step: number; phase: Phase }): WorkerConfig => ({
    role: "steps", url: databaseUrl, schema, executorId: "s3", workflowId, steps: STEPS, mode, ...(pauseAt ? { pauseAt } : {}),
  });

  const checker = new SequenceChecker("reader across the kills", 0, (i) => i, STEPS);
  let following: Promise<void> | undefined;
  const kills: { step: number; phase: Phase; paused: boolean; pid: number; progress: number }[] = [];
  let starts = 0;

  for (let n = 0; n <= KILLS; n++) {
    const [{ progress }] = (await admin.unsafe(
      `select count(*)::int as progress from "${schema}".step_outputs where workflow_id = $1`, [workflowId],
    )) as unknown as [{ progress: number }];
    // Spread the remaining kills over the remaining steps, always ahead of what is recorded.
    const spacing = Math.max(1, Math.floor((STEPS - 2 - progress) / (KILLS - n + 1)));
    const plan = n < KILLS
      ? { step: Math.min(STEPS - 2, progress + rng.int(1, 2 * spacing - 1)), phase: rng.pick(PHASES), paused: rng.next() < 0.5 }
      : undefined;
    const child = new Child<WorkerMessage>(`worker ${n}`, fixture("worker.ts"), config(
      n === 0 ? "start" : "recover",
      plan?.paused ? { step: plan.step, phase: plan.phase } : undefined,
    ));
    starts++;
    await child.waitFor("ready", (m) => m.type === "ready", 30_000);
    following ??= follow(checker, engine.readStreamEntries(workflowId, "out"));
    if (!plan) {
      await child.waitFor("the workflow to finish", (m) => m.type === "done", 60_000);
      expect(await child.exited).toEqual({ code: 0, signal: null });
      break;
    }
    const where = (m: WorkerMessage) =>
      plan.paused ? m.type === "paused" : m.type === "at" && m.step === plan.step && m.phase === plan.phase;
    await child.waitFor(`step ${plan.step} ${plan.phase}`, where, 60_000);
    await child.kill();
    report.fault("worker SIGKILL{s}");
    kills.push({ ...plan, pid: child.pid, progress });
  }

  const result = await deadline(30_000, "the workflow's result", engine.retrieveWorkflow(workflowId).getResult());
  await deadline(30_000, "the reader to end", following!);
  const counts = checker.counts();
  report.counts(counts);
  report.wrote(STEPS);

  // Side effects: which steps ran more than once, and were they the ones in flight?
  const rows = (await admin.unsafe(`select step, pid from "${schema}".side_effects order by id`)) as unknown as { step: number; pid: number }[];
  const lastStepOf = new Map<number, number>();
  for (const r of rows) lastStepOf.set(r.pid, Math.max(lastStepOf.get(r.pid) ?? -1, r.step));
  const killedPids = new Set(kills.map((k) => k.pid));
  const runs = new Map<number, { pid: number }[]>();
  for (const r of rows) runs.set(r.step, [...(runs.get(r.step) ?? []), r]);
  const problems: string[] = [];
  for (let s = 0; s < STEPS; s++) {
    const ran = runs.get(s) ?? [];
    if (ran.length === 0) problems.push(`step ${s} never ran`);
    if (ran.length > 2) problems.push(`step ${s} ran ${ran.length} times`);
    // Every run but the last was cut short by a kill while this step was in flight.
    for (const earlier of ran.slice(0, -1)) {
      if (!killedPids.has(earlier.pid)) problems.push(`step ${s} re-ran after pid ${earlier.pid}, which was not killed`);
      else if (lastStepOf.get(earlier.pid) !== s) problems.push(`step ${s} re-ran, but pid ${earlier.pid} went on to step ${lastStepOf.get(earlier.pid)}`);
    }
  }
  for (const k of kills.filter((k) => k.paused)) {
    const expected = k.phase === "in-step" ? 2 : 1;
    const got = runs.get(k.step)?.length ?? 0;
    if (got !== expected) problems.push(`kill paused at step ${k.step} ${k.phase}: the step ran ${got} times, expected ${expected}`);
  }
  const reran = [...runs.values()].filter((r) => r.length > 1).length;
  const [stored] = await admin.unsafe(
    `select count(*)::int as n, count(distinct "offset")::int as offsets, max("offset")::int as last,
            bool_and(closed = ("offset" = ${STEPS})) as close_last,
            bool_and(closed or value = to_jsonb("offset")) as values_match
     from "${schema}".stream_entries where workflow_id = $1 and key = 'out'`,
    [workflowId],
  );
  const byPhase = PHASES.map((p) => `${p} ${kills.filter((k) => k.phase === p && k.paused).length}`).join(", ");
  report.note(`${kills.length} kills, ${starts} worker processes; paused kills by phase: ${byPhase}; ${kills.filter((k) => !k.paused).length} kills while running`);
  report.note(`${reran} steps ran twice (each the step in flight at a kill); ${rows.length} side-effect rows for ${STEPS} steps`);

  expect(result).toBe(STEPS);
  expect(kills).toHaveLength(KILLS);
  expect(problems).toEqual([]);
  expect(counts.problems).toEqual([]);
  expect(exact(counts)).toBe(true);
  expect(stored).toEqual({ n: STEPS + 1, offsets: STEPS + 1, last: STEPS, close_last: true, values_match: true });
  expect(reran).toBeGreaterThanOrEqual(kills.filter((k) => k.paused && k.phase === "in-step").length);
  expect(reran).toBeLessThanOrEqual(KILLS);
});
