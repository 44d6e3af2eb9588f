// Used inside a snippet's process (the module the test writes: prelude + snippet +
// epilogue): control messages to the test on stdout, and the test's "you may stop" as the
// end of stdin. Control lines start with "@@docs " so they are never mistaken for what
// the snippet itself prints.

export const CONTROL = "@@docs ";

/** Tells the test something (a port, "ready"): one JSON line on stdout. */
export function announce(message: Record<string, unknown>): void {
  process.stdout.write(`${CONTROL}${JSON.stringify(message)}\n`);
}

/** Resolves when the test closes this process's stdin: the test is done with it. */
export function stdinEnded(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.on("data", () => {});
    process.stdin.once("end", () => {
      process.stdin.destroy();
      resolve();
    });
    process.stdin.resume();
  });
}
