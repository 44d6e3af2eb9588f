// pgtide tail <workflowId> <key>: a stream's entries, as they are written, until its close.
import { EXIT, GLOBAL_HELP, write, type Command } from "./command.js";
import { parseCount } from "./parse.js";

export const tail: Command = {
  name: "tail",
  summary: "print a stream's entries as they are written; exit at its close",
  help: `Usage: pgtide tail <workflowId> <key> [--from N] [--json]

Prints each entry of the stream <key> of workflow <workflowId> as soon as it is
committed, one per line, and exits 0 when the stream is closed (by the workflow, or
because the workflow finished). A string is printed as it is, any other value as JSON.

Options:
  --from <N>            first offset to print (default 0): after k entries, resume with --from k
  --json                print {"offset":N,"value":…} per entry, one JSON document per line

${GLOBAL_HELP}

Exits 1 with a message if the workflow does not exist or the database is unreachable or lost.`,
  positionals: ["workflowId", "key"],
  options: {
    from: { type: "string" },
    json: { type: "boolean" },
  },
  async run({ positionals: [workflowId, key], values, io, open, signal }) {
    const fromOffset = parseCount("--from", values.from) ?? 0;
    const engine = await open();
    for await (const entry of engine.readStreamEntries(workflowId!, key!, { fromOffset, signal })) {
      const line = values.json
        ? JSON.stringify(entry)
        : typeof entry.value === "string" ? entry.value : JSON.stringify(entry.value);
      await write(io.stdout, `${line}\n`);
    }
    return EXIT.ok;
  },
};
