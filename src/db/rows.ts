// A result from the driver is whole or it is an error (DESIGN invariant 11). postgres.js
// 3.4.9 could resolve a query with leading holes after another query on its connection
// failed mid-result (porsager/postgres issues 1119, 1181; patched in patches/). pgtide
// never reads such a result: `rows[0]` would be undefined, and a "not found" or a
// TypeError would follow. Every statement's rows pass through here.

/** The rows, or an error classed as transient (retried like a dropped connection). */
export function whole<R extends readonly unknown[]>(rows: R): R {
  for (let i = 0; i < rows.length; i++) {
    if (rows[i] === undefined) throw new BrokenResultError(i, rows.length);
  }
  return rows;
}

export class BrokenResultError extends Error {
  readonly code = "BROKEN_RESULT";
  constructor(index: number, length: number) {
    super(`the driver returned a result with a hole at row ${index} of ${length}`);
    this.name = "BrokenResultError";
  }
}
