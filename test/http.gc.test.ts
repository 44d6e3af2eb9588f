// Node's Request follows the signal it was made with only while the Request object is
// reachable (nodejs/node#55428, nodejs/undici#3644, open): once collected, aborting the
// signal no longer aborts request.signal. A server holds the Request only until its
// handler returns a Response, so a client that left after a GC was never noticed: its
// SSE body and its stream reader lived on (found as a rare outage-matrix failure).
import v8 from "node:v8";
import vm from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamResponse } from "../src/http/index.js";
import type { Engine } from "../src/index.js";
import { gate, openEngine, within } from "./support/engines.js";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

let engine: Engine;
beforeAll(async () => {
  engine = await openEngine();
});
afterAll(async () => {
  await engine.close();
});

/** Everything unreachable collected, however many rounds it takes. */
async function collectGarbage(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe("an SSE body whose Request is garbage collected", () => {
  it("still ends, and frees its reader, when the request's signal is aborted", async () => {
    const release = gate();
    const wf = engine.workflow(`gc-${Date.now()}`, async (ctx) => {
      await ctx.writeStream("s", "a");
      await release.promise;
    });
    const handle = await wf.start();
    const client = new AbortController();
    // Made and dropped here: after this function returns, nothing but pgtide holds it.
    const respond = () =>
      streamResponse(engine, {
        workflowId: handle.workflowId, key: "s", authorize: () => true,
        request: new Request("http://x/", { signal: client.signal }),
      });
    const response = await respond();
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n\n")) text += (await within(5000, "the first event", reader.read())).value ?? "";
    expect(engine.readerCount).toBe(1);
    await collectGarbage();
    client.abort(new Error("the client left"));
    const rest = (async () => {
      for (;;) if ((await reader.read()).done) return;
    })();
    await within(3000, "the body to end after the abort", rest);
    expect(engine.readerCount).toBe(0);
    release.open();
    await handle.getResult();
  });
});
