// What every `pgtide` command shares: its shape, the global options, the errors that
// end a run with a message, and how output is written.
import type { ParseArgsConfig } from "node:util";
import type { Engine } from "../engine.js";

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

export type OptionValues = Record<string, string | boolean | undefined>;

export interface CommandContext {
  positionals: string[];
  values: OptionValues;
  io: Io;
  /** Connects (after checking the database answers and the schema exists). */
  open: () => Promise<Engine>;
  /** Aborted by Ctrl-C, a closed stdout, or a lost database. */
  signal: AbortSignal;
}

export interface Command {
  name: string;
  /** One line, for `pgtide --help`. */
  summary: string;
  /** The full `pgtide <name> --help` text. */
  help: string;
  /** Names of the required positionals, in order. */
  positionals: string[];
  options: NonNullable<ParseArgsConfig["options"]>;
  run(context: CommandContext): Promise<number>;
}

/** Options every command takes. */
export const GLOBAL_OPTIONS = {
  "database-url": { type: "string" },
  schema: { type: "string", default: "pgtide" },
  help: { type: "boolean", short: "h" },
} as const satisfies NonNullable<ParseArgsConfig["options"]>;

export const GLOBAL_HELP = `Connection:
  --database-url <url>  Postgres to read (default: $DATABASE_URL)
  --schema <name>       schema the engine uses (default: pgtide)
  -h, --help            show this help`;

/** Exit codes: 0 done, 1 failed (unknown workflow, database unreachable or lost), 2 bad usage, 130 interrupted. */
export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

/** Ends the run with a message on stderr and an exit code. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.failed) {
    super(message);
    this.name = new.target.name;
  }
}

export class UsageError extends CliError {
  constructor(message: string, readonly command?: string) {
    super(message, EXIT.usage);
  }
}

/** Writes and waits for the stream to take more, so a slow pipe holds the reader back. */
export async function write(stream: NodeJS.WritableStream, text: string): Promise<void> {
  if (stream.write(text)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      stream.off("error", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
    stream.on("error", done);
  });
}
