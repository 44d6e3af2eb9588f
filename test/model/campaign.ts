// npm run test:model -- [--kind inprocess|kill|restart|all] [--runs N] [--seed S --path P] [--budget SECONDS]
//                        [--shrink-budget SECONDS] [--survey] [--focus REGEX]
// A long campaign of the model-based property tests (or the replay of one failing case),
// on DATABASE_URL or else an embedded Postgres started here. Prints progress, cases per
// second, and a summary of the cases run and the faults injected by kind.
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../src/db/embedded.js";
import { KINDS, runCampaign, type Kind } from "./properties.js";

const { values } = parseArgs({
  options: {
    kind: { type: "string", default: "all" },
    runs: { type: "string", default: "200" },
    seed: { type: "string" },
    path: { type: "string" },
    budget: { type: "string" },
    "shrink-budget": { type: "string", default: "300" },
    survey: { type: "boolean", default: false },
    focus: { type: "string" },
  },
});

const kinds: Kind[] = values.kind === "all" ? KINDS : [values.kind as Kind];
if (!kinds.every((k) => KINDS.includes(k))) {
  console.error(`--kind must be one of ${KINDS.join(", ")}, all`);
  process.exit(2);
}
const runs = Number(values.runs);
// Spread an "all" campaign: most cases in-process, a tenth with real SIGKILLs, a few restarts.
const share: Record<Kind, number> = values.kind === "all" ? { inprocess: 0.85, kill: 0.1, restart: 0.05 } : { inprocess: 1, kill: 1, restart: 1 };

let url = process.env.DATABASE_URL;
let embedded: EmbeddedPostgres | undefined;
let dir: string | undefined;
if (!url) {
  dir = await mkdtemp(path.join(tmpdir(), "pgtide-campaign-"));
  await chmod(dir, 0o755);
  embedded = await startEmbeddedPostgres({ dataDir: path.join(dir, "pgdata") });
  url = embedded.url;
}

let failed = false;
const summaries: string[] = [];
try {
  for (const kind of kinds) {
    const n = Math.max(1, Math.round(runs * share[kind]));
    console.log(`\n== ${kind}: ${n} cases${values.seed ? ` (seed ${values.seed}${values.path ? `, path ${values.path}` : ""})` : ""}`);
    const result = await runCampaign({
      kind, url, runs: n,
      ...(values.seed ? { seed: Number(values.seed) } : {}),
      ...(values.path ? { path: values.path } : {}),
      ...(values.budget ? { budgetMs: Number(values.budget) * 1000 } : {}),
      shrinkBudgetMs: Number(values["shrink-budget"]) * 1000,
      survey: values.survey,
      ...(values.focus ? { focus: new RegExp(values.focus) } : {}),
      log: (line) => console.log(line),
    });
    console.log(result.report);
    summaries.push(result.report.split("\n").slice(0, 2).join("\n"));
    failed ||= result.failed;
  }
} finally {
  await embedded?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}
console.log(`\n== summary\n${summaries.join("\n")}\n${failed ? "FAILED" : "passed"}`);
process.exit(failed ? 1 : 0);
