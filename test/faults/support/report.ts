// RELIABILITY.md: one row per fault scenario. Each scenario file records its row when
// it finishes (pass or FAIL); the file is rebuilt from the rows kept in a comment at its
// end, under a lock, so files running in parallel or alone never drop each other's rows.
import { mkdir, readFile, rename, rmdir, stat, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll } from "vitest";
import { admin } from "../../support/engines.js";
import type { SequenceCounts } from "./sequence.js";
import { until } from "./wait.js";

export const RELIABILITY_MD = fileURLToPath(new URL("../../../RELIABILITY.md", import.meta.url));

export interface ScenarioRow {
  id: number;
  title: string;
  readers: number;
  written: number;
  read: number;
  lost: number;
  duplicated: number;
  reordered: number;
  /** Wrong values, readers without a close, readers that failed (all must be 0). */
  otherProblems: number;
  /** What was injected, e.g. { "listener kill{s}": 20 } ("{s}" is the plural ending). */
  faults: Record<string, number>;
  ms: number;
  postgres: string;
  result: "pass" | "FAIL";
  seed: number | null;
  /** What the scenario does and what was scaled: fixed text from the test file. */
  about: string;
  /** Measured during the run (bounds, counts worth keeping). */
  notes: string[];
  ranAt: string;
}

export class FaultReport {
  readonly row: ScenarioRow;
  private started = 0;
  private failed = false;
  private ran = false;

  constructor(id: number, title: string, about: string) {
    this.row = {
      id, title, readers: 0, written: 0, read: 0, lost: 0, duplicated: 0, reordered: 0, otherProblems: 0,
      faults: {}, ms: 0, postgres: "?", result: "FAIL", seed: null, about, notes: [], ranAt: "",
    };
  }

  /** Adds readers' counts (call once per group of readers). */
  counts(c: SequenceCounts): void {
    this.row.readers += c.readers;
    this.row.read += c.read;
    this.row.lost += c.lost;
    this.row.duplicated += c.duplicated;
    this.row.reordered += c.reordered;
    this.row.otherProblems += c.wrong + c.unclosed + c.failed;
  }

  wrote(entries: number): void {
    this.row.written += entries;
  }

  /** Counts an injected fault; `kind` marks its plural ending with "{s}", e.g. "listener kill{s}". */
  fault(kind: string, n = 1): void {
    this.row.faults[kind] = (this.row.faults[kind] ?? 0) + n;
  }

  note(text: string): void {
    this.row.notes.push(text);
  }

  seed(seed: number): void {
    this.row.seed = seed;
  }

  postgres(version: string): void {
    this.row.postgres = version;
  }

  /** @internal */
  begin(): void {
    this.started ||= performance.now();
  }

  /** @internal */
  finishTest(state: string | undefined): void {
    this.ran = true;
    if (state !== "pass") this.failed = true;
  }

  /** @internal */
  async save(): Promise<void> {
    if (!this.ran) return; // skipped or filtered out: keep the previous row
    this.row.ms = Math.round(performance.now() - this.started);
    this.row.result = this.failed ? "FAIL" : "pass";
    this.row.ranAt = new Date().toISOString();
    if (this.failed && this.row.seed !== null) this.note(`rerun with FAULT_SEED=${this.row.seed}`);
    await recordRow(this.row);
  }
}

/**
 * The report of the scenario in this test file: timed from its first test to its last,
 * saved after them (FAIL if any failed).
 */
export function faultReport(id: number, title: string, about: string): FaultReport {
  const report = new FaultReport(id, title, about);
  beforeAll(async () => {
    const [row] = await admin`select current_setting('server_version') as v`;
    report.postgres(String(row?.v ?? "?").split(" ")[0]!);
    report.begin();
  });
  afterEach(({ task }) => report.finishTest(task.result?.state));
  afterAll(() => report.save());
  return report;
}

const DATA_START = "<!-- fault-suite rows (written by test/faults/support/report.ts; one JSON row per line)";
const DATA_END = "-->";

export async function recordRow(row: ScenarioRow): Promise<void> {
  await withLock(`${RELIABILITY_MD}.lock`, async () => {
    const rows = new Map((await readRows()).map((r) => [r.id, r]));
    rows.set(row.id, row);
    const text = render([...rows.values()].sort((a, b) => a.id - b.id), await searchesSection());
    await writeFile(`${RELIABILITY_MD}.tmp`, text);
    await rename(`${RELIABILITY_MD}.tmp`, RELIABILITY_MD);
  });
}

export async function readRows(): Promise<ScenarioRow[]> {
  let text: string;
  try {
    text = await readFile(RELIABILITY_MD, "utf8");
  } catch {
    return [];
  }
  const start = text.indexOf(DATA_START);
  if (start < 0) return [];
  const end = text.indexOf(DATA_END, start);
  return text
    .slice(start + DATA_START.length, end < 0 ? undefined : end)
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as ScenarioRow);
}

async function withLock(lock: string, fn: () => Promise<void>): Promise<void> {
  await until("the RELIABILITY.md lock", 30_000, async () => {
    try {
      await mkdir(lock);
      return true;
    } catch {
      // A holder that died leaves its lock: a write takes milliseconds, so 20 s is stale.
      const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > 20_000) await rmdir(lock).catch(() => {});
      return false;
    }
  });
  try {
    await fn();
  } finally {
    await rmdir(lock).catch(() => {});
  }
}

const n = (x: number) => x.toLocaleString("en-US");
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The searches (model campaign, matrices, attacks), kept by hand in docs/: placed as they are. */
async function searchesSection(): Promise<string> {
  return (await readFile(SEARCHES_MD, "utf8")).trim();
}

const SEARCHES_MD = fileURLToPath(new URL("../../../docs/reliability-searches.md", import.meta.url));

function render(rows: ScenarioRow[], searches: string): string {
  const total = rows.reduce((sum, r) => sum + r.ms, 0);
  const table = [
    "| # | Scenario | Readers | Written | Read | Lost | Duplicated | Reordered | Faults injected | Time | Postgres | Result |",
    "|--:|---|--:|--:|--:|--:|--:|--:|---|--:|---|---|",
    ...rows.map((r) => {
      const faults = Object.entries(r.faults).map(([kind, count]) => `${n(count)} ${kind.replace("{s}", count === 1 ? "" : "s")}`).join(", ") || "–";
      const result = r.result === "pass" && r.otherProblems === 0 ? "pass" : `**${r.result}**${r.otherProblems ? ` (${r.otherProblems} other problems)` : ""}`;
      return `| ${r.id} | ${r.title} | ${n(r.readers)} | ${n(r.written)} | ${n(r.read)} | ${n(r.lost)} | ${n(r.duplicated)} | ${n(r.reordered)} | ${faults} | ${seconds(r.ms)} | ${r.postgres} | ${result} |`;
    }),
  ];
  const details = rows.flatMap((r) => [
    `### ${r.id}. ${r.title}`,
    "",
    r.about,
    "",
    ...(r.notes.length > 0 ? ["Measured in the last run:", "", ...r.notes.map((note) => `- ${note}`), ""] : []),
    `Last run ${r.ranAt.slice(0, 16).replace("T", " ")} UTC on Postgres ${r.postgres}${r.seed === null ? "" : `, seed ${r.seed}`}.`,
    "",
  ]);
  return [
    "# Reliability",
    "",
    "What pgtide promises, in plain words:",
    "",
    "- **A reader sees every entry exactly once, in order, and then the end of the stream** — from the",
    "  offset it asked for, whatever happens in between to its connections, to Postgres or to the",
    "  process running the workflow. Nothing is lost, nothing comes twice, nothing overtakes anything.",
    "- **Readers heal themselves.** A notification is only a hint. When the listening connection is",
    "  killed, or goes silent without closing, the engine reconnects (a heartbeat notices a silent one",
    "  within about 2 × `heartbeatMs`) and every reader re-reads from where it stopped.",
    "- **Writes survive a Postgres restart.** Appends in flight are retried until Postgres is back",
    "  (they are idempotent), for at most `retryTimeoutMs`; past that `writeStream` rejects with",
    "  `ConnectionError` (code `CONNECTION`), the workflow stays PENDING, and `launch()` finishes it later.",
    "- **A killed worker loses nothing.** A fresh process calling `launch()` resumes the workflow; its",
    "  stream writes land exactly once. Only the step that was running at the moment of the kill runs",
    "  again (steps are at-least-once: make their side effects idempotent).",
    "- **A slow reader costs bounded memory.** It pages through the table (2,000 entries or 4 MiB of",
    "  values at a time) instead of buffering what it has not consumed.",
    "- **Bad input is refused before anything is written**, with a named error and a `code`; hostile",
    "  strings in ids, keys and values are data, never SQL, and come back byte for byte.",
    "",
    "## The fault suite",
    "",
    "`npm run test:faults` runs it (it is also part of `npm test`). Every scenario checks every",
    "reader's sequence entry by entry with one checker (test/faults/support/sequence.ts): each offset",
    "once, in order, with the value written there, then the close. Fault moments come from a seeded",
    "PRNG (entry counts or step numbers, never wall-clock sleeps); `FAULT_SEED=n` replays a run.",
    "Each scenario rewrites its own row below when it runs.",
    "",
    ...table,
    "",
    `Sum of the scenario times: ${seconds(total)}.`,
    "",
    searches,
    "",
    "## The scenarios",
    "",
    ...details,
    DATA_START,
    ...rows.map((r) => JSON.stringify(r).replace(/>/g, "\\u003e")),
    DATA_END,
    "",
  ].join("\n");
}
