// BENCHMARKS.md: the machine, what was measured, the targets with ✓/✗, then every row
// with its same-run baseline and the ratio between them.
import { fmt, x, type Row, type ScenarioResult } from "./support.js";

export interface Machine {
  nproc: number;
  cpu: string;
  memGB: number;
  os: string;
  node: string;
  postgres: string;
  postgresWhere: string;
  postgresSettings: string;
  redis: string;
  /** What ran: tsc's output, or src/ through tsx. */
  pgtide: string;
  loadBefore: string;
  loadAfter: string;
}

export interface Report {
  generatedAt: string;
  mode: "quick" | "full";
  seconds: number;
  machine: Machine;
  scenarios: (ScenarioResult | { id: string; title: string; error: string })[];
}

const cell = (s: string) => s.replace(/\|/g, "\\|");

function dist(row: Row["value"], unit: Row["unit"]): string[] {
  return [fmt(row.min, unit), fmt(row.median, unit), fmt(row.p99, unit)];
}

/** `analysis`: bench/NOTES.md, hand-written (profiles, limits), appended as it is. */
export function renderMarkdown(r: Report, analysis?: string): string {
  const m = r.machine;
  const out: string[] = [];
  out.push("# pgtide benchmarks", "");
  out.push(
    `Written by \`npm run bench${r.mode === "quick" ? " -- --quick" : ""}\` on ${r.generatedAt.slice(0, 16).replace("T", " ")} UTC ` +
      `(${r.mode} mode${r.mode === "quick" ? ": smaller sizes, same code paths — run the full mode for the figures to quote" : ""}; ${r.seconds.toFixed(0)} s).`,
    "",
  );
  out.push("**Machine:** " +
    `${m.nproc} CPUs (${m.cpu}), ${m.memGB} GB RAM, ${m.os}, Node ${m.node}; ` +
    `PostgreSQL ${m.postgres} (${m.postgresWhere}; ${m.postgresSettings}); Redis ${m.redis}; pgtide ${m.pgtide}. ` +
    `Load average (1/5/15 min) ${m.loadBefore} before, ${m.loadAfter} after.`, "");
  out.push("**What was measured:** every scenario runs in a process of its own, against a fresh schema dropped afterwards, " +
    "and compares pgtide with a baseline measured in the same run on the same machine (machines are noisy; absolute " +
    "times drift, ratios much less). Latencies are in milliseconds from the writer's call to the reader having the value, " +
    "both ends in one process (one clock). min / median / p99 are nearest-rank over all samples; a ratio is pgtide ÷ " +
    "baseline on the medians (and on the p99s for latencies). The code is in `bench/`, one file per scenario.", "");

  out.push("## Targets", "");
  out.push("| Scenario | Target | Measured | |", "|---|---|---|:-:|");
  for (const s of r.scenarios) {
    if ("error" in s) {
      out.push(`| ${cell(s.title)} | (did not complete) | ${cell(s.error)} | ✗ |`);
      continue;
    }
    for (const t of s.targets) out.push(`| ${cell(s.title)} | ${cell(t.text)} | ${cell(t.measured)} | ${t.ok ? "✓" : "✗"} |`);
  }
  out.push("");

  out.push("## Results", "");
  out.push(
    "| Measure | unit | min | median | p99 | Baseline (same run) | min | median | p99 | ratio median | ratio p99 |",
    "|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|",
  );
  for (const s of r.scenarios) {
    out.push(`| **${cell(s.title)}** | | | | | | | | | | |`);
    if ("error" in s) continue;
    for (const row of s.rows) {
      const b = row.baseline;
      out.push(`| ${[
        cell(row.label), row.unit, ...dist(row.value, row.unit),
        b ? cell(b.label) : "", ...(b ? dist(b.value, row.unit) : ["", "", ""]),
        row.ratio ? x(row.ratio.median) : "", row.ratio?.p99 !== undefined ? x(row.ratio.p99) : "",
      ].join(" | ")} |`);
    }
  }
  out.push("");

  out.push("## How each figure was measured", "");
  for (const s of r.scenarios) {
    out.push(`### ${s.title}`, "");
    if ("error" in s) {
      out.push(`Did not complete: ${s.error}`, "");
      continue;
    }
    out.push(s.what, "");
    for (const n of s.notes) out.push(`- ${n}`);
    if (s.notes.length > 0) out.push("");
  }
  if (analysis) out.push(analysis.trim(), "");
  return `${out.join("\n")}\n`;
}
