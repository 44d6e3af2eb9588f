import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { WorkflowWatch } from "../src/workflow/watch.js";

const settled = async (p: Promise<void>) => {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
};

describe("the workflow watch (getResult's wake-ups)", () => {
  it("keeps a wake-up that comes after one wait ended and before the next began", async () => {
    // getResult: wait, woken (a listener reconnect), re-read the status (still PENDING),
    // the status NOTIFY arrives while that read is in flight, wait again: it must not sleep.
    const watch = new WorkflowWatch();
    const sub = watch.subscribe("w");
    const first = sub.changed();
    watch.notifyAll();
    expect(await settled(first)).toBe(true);
    watch.notify("w");
    expect(await settled(sub.changed())).toBe(true);
    sub.close();
  });

  it("never loses a wake-up, whatever the order of waits and notifications", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom("wait", "notify", "notifyAll", "other"), { maxLength: 30 }), async (ops) => {
        const watch = new WorkflowWatch();
        const sub = watch.subscribe("w");
        let waiting: Promise<void> | undefined;
        let owed = false; // a notification came that no ended wait has consumed
        for (const op of ops) {
          if (op === "wait") {
            if (waiting) continue;
            waiting = sub.changed();
            if (owed) {
              expect(await settled(waiting)).toBe(true);
              waiting = undefined;
              owed = false;
            }
          } else if (op === "other") {
            watch.notify("x");
          } else {
            if (op === "notify") watch.notify("w");
            else watch.notifyAll();
            if (waiting) {
              expect(await settled(waiting)).toBe(true);
              waiting = undefined;
            } else owed = true;
          }
        }
        if (waiting) expect(await settled(waiting)).toBe(false);
        sub.close();
      }),
    );
  });

  it("an aborted wait rejects with the signal's reason and a later wait still wakes", async () => {
    const watch = new WorkflowWatch();
    const sub = watch.subscribe("w");
    const controller = new AbortController();
    const aborted = sub.changed(controller.signal);
    controller.abort(new Error("stop"));
    await expect(aborted).rejects.toThrow("stop");
    const next = sub.changed();
    watch.notify("w");
    expect(await settled(next)).toBe(true);
    sub.close();
  });
});
