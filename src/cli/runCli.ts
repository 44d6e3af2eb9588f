// Runs one `pgtide` command line: picks the command, parses its options (node:util
// parseArgs), opens the engine it asks for, and turns every way a run can end into an
// exit code and, when there is something to say, one line on stderr.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { Engine } from "../engine.js";
import { PgtideError, WorkflowNotFoundError } from "../errors.js";
import { redactSecrets, redactUrl } from "../db/redact.js";
import { CliError, EXIT, GLOBAL_HELP, GLOBAL_OPTIONS, UsageError, write, type Command, type Io } from "./command.js";
import { list } from "./list.js";
import { databaseUrlOf } from "./parse.js";
import { progress } from "./progress.js";
import { status } from "./status.js";
import { tail } from "./tail.js";

const COMMANDS: Command[] = [tail, progress, status, list];

const HELP = `Usage: pgtide <command> [options]

Follow pgtide workflows and their streams from a terminal.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(10)} ${c.summary}`).join("\n")}

${GLOBAL_HELP}
  --version             print the version

Run \`pgtide <command> --help\` for a command's arguments.
Exit codes: 0 done, 1 failed (unknown workflow, database unreachable or lost), 2 bad usage.`;

/** `signal` is the caller's interrupt (Ctrl-C): the run stops and exits 130. */
export async function runCli(argv: string[], io: Io, signal?: AbortSignal): Promise<number> {
  let engine: Engine | undefined;
  const stop = new AbortController();
  const quiet = (code: number) => new CliError("", code);
  const onInterrupt = () => stop.abort(quiet(EXIT.interrupted));
  signal?.addEventListener("abort", onInterrupt, { once: true });
  // `pgtide tail … | head` closes our stdout: stop reading, quietly.
  const onStdoutError = (error: NodeJS.ErrnoException) => stop.abort(error.code === "EPIPE" ? quiet(EXIT.ok) : error);
  io.stdout.on("error", onStdoutError);

  let command: Command | undefined;
  // The URLs whose passwords no message may show: DATABASE_URL, then --database-url.
  const urls: (string | undefined)[] = [io.env.DATABASE_URL];
  try {
    const [name, ...rest] = argv;
    if (name === undefined || name === "--help" || name === "-h" || (name === "help" && rest.length === 0)) {
      await write(io.stdout, `${HELP}\n`);
      return EXIT.ok;
    }
    if (name === "--version") {
      await write(io.stdout, `${version()}\n`);
      return EXIT.ok;
    }
    if (name === "help") {
      command = find(rest[0]!);
      await write(io.stdout, `${command.help}\n`);
      return EXIT.ok;
    }
    command = find(name);
    const { values, positionals } = parse(command, rest);
    urls.push(values["database-url"] as string | undefined);
    if (values.help) {
      await write(io.stdout, `${command.help}\n`);
      return EXIT.ok;
    }
    const databaseUrl = databaseUrlOf(values, io.env);
    const open = async () => {
      // Loaded only here: --help and usage errors answer without loading the engine.
      const { openEngine } = await import("./connect.js");
      engine = await openEngine(databaseUrl, values.schema as string);
      engine.on("error", (error) => {
        stop.abort(new CliError(`lost the connection to Postgres at ${redactUrl(databaseUrl)}: ${(error as Error)?.message ?? String(error)}`));
      });
      return engine;
    };
    try {
      return await command.run({ positionals, values, io, open, signal: stop.signal });
    } catch (error) {
      // Say where we looked: a wrong --schema or URL is the usual reason.
      if (error instanceof WorkflowNotFoundError) {
        throw new CliError(`${error.message} in schema "${values.schema as string}" at ${redactUrl(databaseUrl)}`);
      }
      throw error;
    }
  } catch (error) {
    // An aborted read rejects with the abort's reason: report why we stopped.
    const reason = stop.signal.aborted ? stop.signal.reason : error;
    return report(reason, command, io, urls);
  } finally {
    signal?.removeEventListener("abort", onInterrupt);
    io.stdout.off("error", onStdoutError);
    await engine?.close();
  }
}

function find(name: string): Command {
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) throw new UsageError(`unknown command ${JSON.stringify(name)}; the commands are ${COMMANDS.map((c) => c.name).join(", ")}`);
  return command;
}

function parse(command: Command, args: string[]) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...GLOBAL_OPTIONS, ...command.options }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message, command.name);
  }
  const { values, positionals } = parsed;
  if (!values.help) {
    const missing = command.positionals.slice(positionals.length);
    if (missing.length > 0) throw new UsageError(`missing ${missing.map((p) => `<${p}>`).join(" ")}`, command.name);
    if (positionals.length > command.positionals.length) {
      throw new UsageError(`unexpected argument ${JSON.stringify(positionals[command.positionals.length])}`, command.name);
    }
  }
  return { values: values as Record<string, string | boolean | undefined>, positionals };
}

/** Every message goes through redactSecrets: whatever a driver, a usage error or an
 * echoed argument says, no password of the URL, PGPASSWORD or any URL in it is printed. */
async function report(error: unknown, command: Command | undefined, io: Io, urls: (string | undefined)[]): Promise<number> {
  let code: number = EXIT.failed;
  let message: string;
  if (error instanceof CliError) {
    code = error.exitCode;
    message = error.message;
    if (error instanceof UsageError) {
      const name = error.command ?? command?.name;
      message += `\nRun \`pgtide ${name ? `${name} ` : ""}--help\`.`;
    }
  } else if (error instanceof PgtideError) {
    if (error.code === "INVALID_ARGUMENT") code = EXIT.usage;
    message = error.message;
  } else {
    message = error instanceof Error ? error.message : String(error);
  }
  if (message) await write(io.stderr, `pgtide: ${redactSecrets(message, urls, io.env)}\n`);
  return code;
}

function version(): string {
  // Two levels up from src/cli/ or dist/cli/.
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}
