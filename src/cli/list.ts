// pgtide list [--status S]: workflows, newest first.
import type { WorkflowStatus } from "../workflow/store.js";
import { EXIT, GLOBAL_HELP, UsageError, write, type Command } from "./command.js";
import { parseCount } from "./parse.js";

const STATUSES: readonly WorkflowStatus[] = ["PENDING", "SUCCESS", "ERROR", "CANCELLED"];

export const list: Command = {
  name: "list",
  summary: "list workflows, newest first",
  help: `Usage: pgtide list [--status S] [--name N] [--limit N] [--json]

Lists workflows, newest first: id, name, status, last update.

Options:
  --status <S>          only workflows in status S: PENDING, SUCCESS, ERROR or CANCELLED
  --name <N>            only workflows registered under the name N
  --limit <N>           at most N workflows (default 50)
  --json                print one JSON document per workflow, one per line

${GLOBAL_HELP}`,
  positionals: [],
  options: {
    status: { type: "string" },
    name: { type: "string" },
    limit: { type: "string" },
    json: { type: "boolean" },
  },
  async run({ values, io, open }) {
    const wanted = (values.status as string | undefined)?.toUpperCase();
    if (wanted !== undefined && !STATUSES.includes(wanted as WorkflowStatus)) {
      throw new UsageError(`--status must be one of ${STATUSES.join(", ")}, got ${JSON.stringify(values.status)}`, "list");
    }
    const limit = parseCount("--limit", values.limit) ?? 50;
    const engine = await open();
    const rows = await engine.listWorkflows({
      status: wanted as WorkflowStatus | undefined,
      name: values.name as string | undefined,
      limit,
    });
    if (values.json) {
      await write(io.stdout, rows.map((row) => `${JSON.stringify(row)}\n`).join(""));
      return EXIT.ok;
    }
    if (rows.length === 0) {
      await write(io.stderr, "no workflows\n");
      return EXIT.ok;
    }
    const table = [
      ["WORKFLOW ID", "NAME", "STATUS", "UPDATED"],
      ...rows.map((r) => [r.workflowId, r.name, r.status, r.updatedAt.toISOString()]),
    ];
    const widths = table[0]!.map((_, i) => Math.max(...table.map((cells) => cells[i]!.length)));
    const text = table.map((cells) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  "));
    await write(io.stdout, `${text.join("\n")}\n`);
    return EXIT.ok;
  },
};
