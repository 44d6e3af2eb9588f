// A worker process for the kill property, run as
//   node --import tsx test/model/worker.ts '<json { url, schema }>'
// It stays up across cases: the parent opens an engine in it for a case (with the case's
// executorId), starts or launch()es the case's workflow, and either SIGKILLs it at a
// point of the program's progress or, once the workflow ended, closes the engine and
// reuses the process for the next case. Every hook the interpreter calls is reported
// over IPC; a step attempt's start is first stored in model_journal (so that in-step
// writes of an attempt that ran are never taken for ones that did not, even if the
// IPC message dies with the process).
import postgres from "postgres";
import { Engine } from "../../src/index.js";
import { registerInterpreter, type Hooks } from "./interpreter.js";
import type { Program } from "./program.js";
import { MAX_VALUE_BYTES, ModelError, type Outcome } from "./values.js";

export interface WorkerConfig {
  url: string;
  schema: string;
  retryTimeoutMs: number;
}

export type ToWorker =
  | { type: "open"; executorId: string; label: string }
  | { type: "start"; workflowId: string; program: Program; pause?: string }
  | { type: "launch"; workflowId: string; pause?: string }
  | { type: "close" };

export type FromWorker =
  | { type: "ready"; pid: number }
  | { type: "opened" }
  | { type: "started" }
  | { type: "launched" }
  | { type: "closed" }
  | { type: "failed"; what: string; message: string }
  | { type: "at"; point: string; run: string }
  | { type: "paused"; point: string }
  | { type: "outcome"; run: string; key: string; outcome: Outcome }
  | { type: "run"; event: "start" | "end"; run: string; outcome?: Outcome }
  | { type: "unhandled"; text: string }
  | { type: "engine-error"; text: string; code?: string };

const config = JSON.parse(process.argv[2]!) as WorkerConfig;
const send = (message: FromWorker) => process.send?.(message);
const text = (e: unknown) => String((e as Error)?.stack ?? e);
process.on("unhandledRejection", (reason) => send({ type: "unhandled", text: text(reason) }));
process.on("uncaughtException", (error) => send({ type: "unhandled", text: text(error) }));

const journal = postgres(config.url, { max: 1, onnotice: () => {}, connection: { application_name: "model:journal" } });
let engine: Engine | undefined;
let wf: ReturnType<typeof registerInterpreter> | undefined;
let pauseAt: string | undefined;
let workflow: string | undefined;

const at = (point: string, run: string): void | Promise<void> => {
  send({ type: "at", point, run });
  if (point === pauseAt) {
    pauseAt = undefined;
    send({ type: "paused", point });
    return new Promise(() => {}); // until the SIGKILL
  }
};

const hooks: Hooks = {
  op: (id, run) => at(`op:${id}`, run),
  body: async (id, attempt, token, run) => {
    await journal.unsafe(
      `insert into "${config.schema}".model_journal (workflow_id, token, op, attempt, run, pid) values ($1, $2, $3, $4, $5, $6)`,
      [workflow ?? "", token, id, attempt, run, process.pid],
    );
    return at(`body:${id}`, run);
  },
  fail: (id, _attempt, run) => void at(`fail:${id}`, run),
  outcome: (key, outcome, run) => send({ type: "outcome", run, key, outcome }),
  run: (event, run, outcome) => send({ type: "run", event, run, ...(outcome ? { outcome } : {}) }),
};

process.on("message", (message: ToWorker) => {
  void (async () => {
    try {
      switch (message.type) {
        case "open": {
          engine = await Engine.open({
            databaseUrl: config.url, schema: config.schema, executorId: message.executorId, heartbeatMs: 1000,
            errorClasses: [ModelError], maxValueBytes: MAX_VALUE_BYTES, retryTimeoutMs: config.retryTimeoutMs,
          });
          engine.on("error", (error) => send({ type: "engine-error", text: text(error), ...(typeof (error as { code?: unknown })?.code === "string" ? { code: (error as { code: string }).code } : {}) }));
          wf = registerInterpreter(engine, message.label, (id) => (id === workflow ? hooks : {}));
          return send({ type: "opened" });
        }
        case "start": {
          workflow = message.workflowId;
          pauseAt = message.pause;
          await wf!.start(message.program, { workflowId: message.workflowId });
          return send({ type: "started" });
        }
        case "launch":
          workflow = message.workflowId;
          pauseAt = message.pause;
          await engine!.launch();
          return send({ type: "launched" });
        case "close":
          await engine?.close();
          engine = undefined;
          wf = undefined;
          workflow = undefined;
          return send({ type: "closed" });
      }
    } catch (error) {
      send({ type: "failed", what: message.type, message: text(error) });
    }
  })();
});

send({ type: "ready", pid: process.pid });
