// Model-based property test, in-process faults: generated workflow programs run on real
// engines while the listener's and the pool's backends are killed, workflows are
// cancelled, engines closed mid-run (and recovered by a new engine's launch()), and
// readers start, abort and resume at random points; every case is judged against the
// model (test/model/model.ts). A bounded search here; `npm run test:model` for campaigns.
import { it } from "vitest";
import { runBounded } from "./vitestRun.js";

it("in-process faults: every generated program keeps pgtide's promises", { timeout: 180_000 }, async () => {
  await runBounded("inprocess", { searchSeconds: 22, shrinkSeconds: 10 });
});
