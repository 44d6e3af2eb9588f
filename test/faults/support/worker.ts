// A worker process for the fault suite, run as
//   node --import tsx test/faults/support/worker.ts '<json WorkerConfig>'
// It opens an engine, starts (or, with mode "recover", launch()es) its workflows, reports
// what it does over IPC, and exits once they finish, unless the test SIGKILLs it first.
//
// role "steps" (scenario 3): one workflow of N steps; step i records a side-effect row
// (step, pid), then the workflow writes i to stream "out". At each point of interest it
// reports { type: "at", step, phase }; at `pauseAt` it stops there and waits to be killed.
// role "producer" (scenario 7): workflows that each write `entries` values to "out",
// pausing halfway until the test sends { type: "open" } (or at once with gateOpen).
import postgres from "postgres";
import { Engine } from "../../../src/index.js";

export type Phase = "in-step" | "after-step" | "write-in-flight" | "after-write";

export type WorkerConfig =
  | {
      role: "steps";
      url: string;
      schema: string;
      executorId: string;
      workflowId: string;
      steps: number;
      mode: "start" | "recover";
      pauseAt?: { step: number; phase: Phase };
    }
  | {
      role: "producer";
      url: string;
      schema: string;
      executorId: string;
      ids: string[];
      entries: number;
      mode: "start" | "recover";
      gateOpen: boolean;
      progressEvery: number;
    };

export type WorkerMessage =
  | { type: "ready"; pid: number }
  | { type: "at"; step: number; phase: Phase }
  | { type: "paused"; step: number; phase: Phase }
  | { type: "half"; id: string }
  | { type: "progress"; id: string; written: number }
  | { type: "finished"; id: string; result: unknown }
  | { type: "done" }
  | { type: "error"; message: string };

const send = (message: WorkerMessage) => process.send!(message);
const config = JSON.parse(process.argv[2]!) as WorkerConfig;
const engine = await Engine.open({ databaseUrl: config.url, schema: config.schema, executorId: config.executorId, heartbeatMs: 1000 });
engine.on("error", (error) => send({ type: "error", message: String((error as Error)?.message ?? error) }));
const cleanups: (() => Promise<void>)[] = [];
let ids: string[];

if (config.role === "steps") {
  const { pauseAt } = config;
  const side = postgres(config.url, { max: 1, onnotice: () => {}, connection: { application_name: "faults:side-effects" } });
  cleanups.push(() => side.end({ timeout: 1 }));
  const hook = async (step: number, phase: Phase) => {
    send({ type: "at", step, phase });
    if (pauseAt?.step === step && pauseAt.phase === phase) {
      send({ type: "paused", step, phase });
      await new Promise(() => {}); // until the SIGKILL
    }
  };
  const wf = engine.workflow("steps", async (ctx, input: { steps: number }) => {
    for (let i = 0; i < input.steps; i++) {
      await ctx.step(`step ${i}`, async () => {
        await side.unsafe(`insert into "${config.schema}".side_effects (step, pid) values ($1, $2)`, [i, process.pid]);
        await hook(i, "in-step");
        return i;
      });
      await hook(i, "after-step");
      const write = ctx.writeStream("out", i);
      await hook(i, "write-in-flight");
      await write;
      await hook(i, "after-write");
    }
    return input.steps;
  });
  if (config.mode === "start") await wf.start({ steps: config.steps }, { workflowId: config.workflowId });
  ids = [config.workflowId];
} else {
  const { entries, progressEvery } = config;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  if (config.gateOpen) open();
  process.on("message", (message: { type?: string }) => {
    if (message.type === "open") open();
  });
  const wf = engine.workflow("produce", async (ctx, input: { entries: number }) => {
    const id = ctx.workflowId;
    for (let i = 0; i < input.entries; i++) {
      if (i === Math.floor(input.entries / 2)) {
        send({ type: "half", id });
        await gate;
      }
      await ctx.writeStream("out", `${id}:${i}`);
      if ((i + 1) % progressEvery === 0) send({ type: "progress", id, written: i + 1 });
    }
    return input.entries;
  });
  if (config.mode === "start") for (const id of config.ids) await wf.start({ entries }, { workflowId: id });
  ids = config.ids;
}

if (config.mode === "recover") await engine.launch();
send({ type: "ready", pid: process.pid });
const results = await Promise.all(
  ids.map(async (id) => {
    const result = await engine.retrieveWorkflow(id).getResult();
    send({ type: "finished", id, result });
  }),
);
void results;
send({ type: "done" });
await engine.close();
for (const cleanup of cleanups) await cleanup();
process.disconnect();
