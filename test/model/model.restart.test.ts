// Model-based property test, Postgres restarts: a private embedded Postgres (never the
// shared one) is restarted, or kept down until the run gives up, at points of a generated
// program's progress; the workflow must finish as the model says, or stay PENDING and be
// finished by a later launch(). A few cases only: a restart costs about a second.
import { it } from "vitest";
import { runBounded } from "./vitestRun.js";

it("Postgres restarts and outages: every generated program keeps pgtide's promises", { timeout: 180_000 }, async () => {
  await runBounded("restart", { searchSeconds: 8, shrinkSeconds: 8 });
});
