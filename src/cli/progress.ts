// pgtide progress <workflowId> <key>: progress entries ({ done, total, label? }, as
// ctx.writeProgress writes them) drawn as bars, one per label, until the stream closes.
// On a terminal the bars redraw in place; piped, cli-progress prints them every second
// and once more at the end.
import cliProgress from "cli-progress";
import type { Progress } from "../workflow/context.js";
import { EXIT, GLOBAL_HELP, write, type Command } from "./command.js";

const LABEL_WIDTH = 12;

export const progress: Command = {
  name: "progress",
  summary: "draw a stream of progress entries as progress bars; exit at its close",
  help: `Usage: pgtide progress <workflowId> <key>

Reads the stream <key> of workflow <workflowId>, whose entries are progress entries
{ done, total, label? } (what ctx.writeProgress writes), and draws one bar per label,
moving as entries are committed. Exits 0 when the stream is closed. An entry that is not
a progress entry is reported on stderr and skipped.

${GLOBAL_HELP}

Exits 1 with a message if the workflow does not exist or the database is unreachable or lost.`,
  positionals: ["workflowId", "key"],
  options: {},
  async run({ positionals: [workflowId, key], io, open, signal }) {
    const engine = await open();
    const multibar = new cliProgress.MultiBar(
      {
        stream: io.stdout,
        format: "{label} [{bar}] {percentage}% | {value}/{total}",
        barCompleteChar: "█",
        barIncompleteChar: "░",
        hideCursor: true,
        noTTYOutput: true, // piped or logged: print the bars periodically rather than nothing
        notTTYSchedule: 1000,
        gracefulExit: false, // Ctrl-C is handled by the command, which stops the bars
      },
    );
    const bars = new Map<string, cliProgress.SingleBar>();
    try {
      for await (const entry of engine.readStreamEntries(workflowId!, key!, { signal })) {
        if (!isProgress(entry.value)) {
          await write(io.stderr, `pgtide: entry ${entry.offset} is not a progress entry { done, total, label? }: ${JSON.stringify(entry.value)}\n`);
          continue;
        }
        const { done, total, label = "" } = entry.value;
        const payload = { label: label.padEnd(LABEL_WIDTH) };
        const bar = bars.get(label);
        if (bar) {
          bar.setTotal(total);
          bar.update(done, payload);
        } else {
          bars.set(label, multibar.create(total, done, payload));
        }
      }
    } finally {
      if (bars.size > 0) multibar.stop();
    }
    if (bars.size === 0) await write(io.stderr, "pgtide: the stream closed without a progress entry\n");
    return EXIT.ok;
  },
};

function isProgress(value: unknown): value is Progress {
  if (typeof value !== "object" || value === null) return false;
  const { done, total, label } = value as Record<string, unknown>;
  return typeof done === "number" && typeof total === "number" && done >= 0 && done <= total &&
    (label === undefined || typeof label === "string");
}
