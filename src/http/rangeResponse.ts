// A stream's entries from `from` (inclusive) to `to` (exclusive) as one JSON document.
// Entries never change once written, so once the stream is closed the answer is final:
// a CDN or browser may keep it for good. Before that it is `no-store`.
import { createHash } from "node:crypto";
import type { Engine } from "../engine.js";

export interface RangeBody {
  entries: { offset: number; value: unknown }[];
  /** The offset after the last entry returned: the `from` of the next range. */
  next: number;
  /** The stream is closed: these entries, and this answer, are final. */
  closed: boolean;
}

export async function rangeResponse(
  engine: Engine, request: Request, signal: AbortSignal, workflowId: string, key: string, from: number, to: number | undefined,
): Promise<Response> {
  // Reads to the end of what is stored and keeps the range: readStream has no upper bound.
  const { values, closed } = await engine.readStream(workflowId, key, { fromOffset: from, wait: false, signal });
  const kept = to === undefined ? values : values.slice(0, Math.max(0, to - from));
  const body: RangeBody = {
    entries: kept.map((value, i) => ({ offset: from + i, value })),
    next: from + kept.length,
    closed,
  };
  const json = JSON.stringify(body);
  if (!closed) {
    return new Response(json, { status: 200, headers: { "content-type": "application/json", "cache-control": "no-store" } });
  }
  const etag = `"${createHash("sha256").update(json).digest("base64url").slice(0, 27)}"`;
  const headers = {
    "content-type": "application/json",
    "cache-control": "public, max-age=31536000, immutable",
    etag,
  };
  if (matches(request.headers.get("if-none-match"), etag)) return new Response(null, { status: 304, headers });
  return new Response(json, { status: 200, headers });
}

function matches(ifNoneMatch: string | null, etag: string): boolean {
  if (ifNoneMatch === null) return false;
  return ifNoneMatch.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t === etag || t === `W/${etag}`;
  });
}
