// The docs' shell blocks, line by line: what each line is (a comment, an `export`, a
// command to run, a command skipped and why), with the placeholders of a usage line
// (`[--from N]`, job-42, summaries) turned into real, quoted arguments.

export type ShellLine =
  | { kind: "blank"; text: string }
  | { kind: "comment"; text: string; comment: string }
  | { kind: "export"; text: string; name: string; value: string }
  /** npm or docker compose: named for the report, checked against package.json / the repo, not run. */
  | { kind: "skip"; text: string; command: string; env: string[]; tool: "npm" | "docker compose"; words: string[] }
  /** A `pgtide …` command line; `words` may hold `[optional groups]`. */
  | { kind: "pgtide"; text: string; words: string[] };

/** The command part of a line: the text before a ` #` comment. */
function splitComment(text: string): { command: string; comment: string } {
  const match = /^(.*?)(?:^|\s+)#(.*)$/.exec(text);
  return match ? { command: match[1]!.trim(), comment: match[2]!.trim() } : { command: text.trim(), comment: "" };
}

export function shellLines(code: string): ShellLine[] {
  return code.split("\n").slice(0, -1).map((text): ShellLine => {
    if (text.trim() === "") return { kind: "blank", text };
    const { command, comment } = splitComment(text);
    if (command === "") return { kind: "comment", text, comment };
    const exported = /^export ([A-Za-z_][A-Za-z0-9_]*)=(\S+)$/.exec(command);
    if (exported) return { kind: "export", text, name: exported[1]!, value: exported[2]! };
    const words = command.split(/\s+/);
    const env: string[] = [];
    while (words.length > 0 && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[0]!)) env.push(words.shift()!);
    if (words[0] === "npm") return { kind: "skip", text, command, env, tool: "npm", words: words.slice(1) };
    if (words[0] === "docker" && words[1] === "compose") return { kind: "skip", text, command, env, tool: "docker compose", words: words.slice(2) };
    if (words[0] === "pgtide" && env.length === 0) return { kind: "pgtide", text, words: words.slice(1) };
    throw new Error(`a shell line this test does not know how to run or skip: ${JSON.stringify(text)}`);
  });
}

/** A usage line's variants: every optional `[…]` group left out or put in (all subsets, in order). */
export function variants(words: string[]): string[][] {
  const groups: { start: number; end: number }[] = [];
  for (let i = 0; i < words.length; i++) {
    if (!words[i]!.startsWith("[")) continue;
    const start = i;
    while (!words[i]!.endsWith("]")) {
      i++;
      if (i >= words.length) throw new Error(`an optional group is never closed: ${words.join(" ")}`);
    }
    groups.push({ start, end: i });
  }
  const out: string[][] = [];
  for (let mask = 0; mask < 1 << groups.length; mask++) {
    const kept: string[] = [];
    let g = 0;
    for (let i = 0; i < words.length; i++) {
      const group = groups[g];
      if (group && i === group.start) {
        if (mask & (1 << g)) kept.push(...words.slice(group.start, group.end + 1).map((w) => w.replace(/^\[|\]$/g, "")));
        i = group.end;
        g++;
        continue;
      }
      kept.push(words[i]!);
    }
    out.push(kept);
  }
  return out;
}

/** A word for sh: kept as is when it needs no quoting, else single-quoted. */
export function shQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
