// pgtide status <workflowId>: one workflow's row.
import type { WorkflowRow } from "../workflow/store.js";
import { EXIT, GLOBAL_HELP, write, type Command } from "./command.js";

export const status: Command = {
  name: "status",
  summary: "show a workflow: name, status, output or error, timestamps",
  help: `Usage: pgtide status <workflowId> [--json]

Shows the workflow's name, status (PENDING, SUCCESS, ERROR or CANCELLED), executor,
its output or error once finished, and when it was created and last updated.

Options:
  --json                print the row as one JSON document

${GLOBAL_HELP}

Exits 1 with a message if the workflow does not exist or the database is unreachable.`,
  positionals: ["workflowId"],
  options: { json: { type: "boolean" } },
  async run({ positionals: [workflowId], values, io, open }) {
    const engine = await open();
    const row = await engine.getWorkflow(workflowId!);
    await write(io.stdout, values.json ? `${JSON.stringify(row)}\n` : describeRow(row));
    return EXIT.ok;
  },
};

function describeRow(row: WorkflowRow): string {
  const lines: [string, string][] = [
    ["workflow", row.workflowId],
    ["name", row.name],
    ["status", row.status],
    ["executor", row.executorId],
    ["created", row.createdAt.toISOString()],
    ["updated", row.updatedAt.toISOString()],
  ];
  if (row.status === "SUCCESS") lines.push(["output", row.output === undefined ? "(none)" : JSON.stringify(row.output)]);
  if (row.error) {
    lines.push(["error", row.error.kind === "value" ? `thrown: ${JSON.stringify(row.error.value)}` : `${row.error.name}: ${row.error.message}`]);
  }
  return lines.map(([k, v]) => `${k.padEnd(9)} ${v}\n`).join("");
}
