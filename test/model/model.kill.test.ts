// Model-based property test, process kills: generated workflow programs run in worker
// processes that are SIGKILLed at points of their progress (paused there, or running on),
// each time recovered by launch() in a new process, with readers and a cancel in the
// test process. Judged against the same model as the in-process cases.
import { it } from "vitest";
import { runBounded } from "./vitestRun.js";

it("worker SIGKILLs: every generated program keeps pgtide's promises", { timeout: 180_000 }, async () => {
  await runBounded("kill", { searchSeconds: 12, shrinkSeconds: 8 });
});
