// Fenced code blocks of a Markdown file (CommonMark fences: ``` or ~~~, indented at most
// three spaces, closed by a fence of the same character at least as long).

export interface Snippet {
  /** The file, relative to the repository root (README.md, docs/http.md, …). */
  file: string;
  /** 1-based position among the file's fenced blocks. */
  index: number;
  /** The info string's first word ("ts", "sh", "json"), or "" for a bare fence. */
  lang: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The block's text, each line ending in "\n", the fence's indentation removed. */
  code: string;
}

export function fencedBlocks(file: string, markdown: string): Snippet[] {
  const lines = markdown.split("\n");
  const out: Snippet[] = [];
  let open: { fence: string; indent: number; lang: string; line: number; body: string[] } | undefined;
  for (const [i, line] of lines.entries()) {
    if (!open) {
      const start = /^( {0,3})(`{3,}|~{3,})\s*([^`\s]*)/.exec(line);
      if (start) open = { fence: start[2]!, indent: start[1]!.length, lang: start[3]!, line: i + 1, body: [] };
      continue;
    }
    const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line);
    if (close && close[1]![0] === open.fence[0] && close[1]!.length >= open.fence.length) {
      out.push({ file, index: out.length + 1, lang: open.lang, line: open.line, code: open.body.map((l) => `${l}\n`).join("") });
      open = undefined;
      continue;
    }
    open.body.push(line.replace(new RegExp(`^ {0,${open.indent}}`), ""));
  }
  if (open) throw new Error(`${file}:${open.line}: a fenced block is never closed`);
  return out;
}
