// Readers a case starts: each records every entry it got, how it ended, and whether it
// yielded anything after its signal fired.
import type { Engine } from "../../src/index.js";
import type { ReaderSpec } from "./faults.js";

export interface ReaderRun {
  spec: ReaderSpec;
  key: string;
  from: number;
  engine: string;
  got: { offset: number; value: unknown }[];
  end?: { how: "closed" } | { how: "error"; error: unknown };
  /** Entries received when its signal fired. */
  abortedAt?: number;
  /**
   * Entries yielded for a next() asked after the signal fired (must stay 0). An entry whose
   * next() was asked before the abort may still arrive: it was on its way already.
   */
  afterAbort: number;
  controller: AbortController;
  done: Promise<void>;
  /** Set when the reader must end at once (it starts at or past an explicit close). */
  prompt?: { closeOffset: number; closeTop: number };
}

export function abortReader(reader: ReaderRun): void {
  if (reader.controller.signal.aborted) return;
  reader.abortedAt = reader.got.length;
  reader.controller.abort(new Error("reader aborted by the model"));
}

export function startReader(engine: Engine, label: string, workflowId: string, key: string, from: number, spec: ReaderSpec): ReaderRun {
  const controller = new AbortController();
  const reader: ReaderRun = { spec, key, from, engine: label, got: [], afterAbort: 0, controller, done: Promise.resolve() };
  const afterEntries = spec.abort && "afterEntries" in spec.abort ? spec.abort.afterEntries : undefined;
  // Whether the next() now pending was asked after the signal fired (for-await asks it
  // as soon as the loop body returns).
  let askedAfterAbort = controller.signal.aborted;
  const take = (offset: number, value: unknown) => {
    if (askedAfterAbort) reader.afterAbort++;
    reader.got.push({ offset, value });
    if (afterEntries !== undefined && reader.got.length === afterEntries) abortReader(reader);
    askedAfterAbort = controller.signal.aborted;
  };
  if (afterEntries === 0) {
    abortReader(reader);
    askedAfterAbort = true;
  }
  reader.done = (async () => {
    try {
      const options = { fromOffset: from, signal: controller.signal };
      if (spec.api === "readStream") {
        if (afterEntries !== undefined) {
          abortReader(reader);
          askedAfterAbort = true;
        }
        const { values } = await engine.readStream(workflowId, key, options);
        values.forEach((v, i) => take(from + i, v));
      } else if (spec.api === "values") {
        let i = 0;
        for await (const v of engine.readStreamAsync(workflowId, key, options)) take(from + i++, v);
      } else {
        for await (const e of engine.readStreamEntries(workflowId, key, options)) take(e.offset, e.value);
      }
      reader.end = { how: "closed" };
    } catch (error) {
      reader.end = { how: "error", error };
    }
  })();
  return reader;
}
