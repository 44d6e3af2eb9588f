// Connection strings fit for messages: every password a URL can carry removed, however
// the URL is written (user info, percent-encoded, `?password=`, several hosts, or so
// malformed that no parser accepts it), and the same passwords scrubbed from any text.
import { inspect } from "node:util";

/** What stands in for a hidden value. */
export const HIDDEN = "***";

/** What redactUrl gives for a string that is not `scheme://…`: it is not shown at all. */
export const NOT_A_URL = "(not a URL; not shown, it may hold a password)";

/** Query parameters whose value is a secret: password, sslpassword, passwd, pwd, token… */
const SECRET_PARAM = /pass|pwd|secret|token|credential/i;

/** Passwords shorter than this are removed from URLs, but not searched for in free text. */
const MIN_SCRUBBED_LENGTH = 4;

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
/** A URL in a message, up to whitespace (the scheme's length bounded, so the search stays linear). */
const URL_IN_TEXT = /[A-Za-z][A-Za-z0-9+.-]{0,30}:\/\/\S*/g;
/** What ends a sentence or a quote after a URL: not part of it. */
const TRAILING = ".,:;!?)]}\"'>";

/**
 * The URL with its passwords hidden: a user-info password is dropped
 * (`postgres://u:pw@h/db` → `postgres://u@h/db`), the value of a password-like query
 * parameter (`password`, `sslpassword`, any case, percent-encoded or repeated) becomes
 * `***`, and so do a fragment and a port that is not a number (`postgres://u:pw` with the
 * host forgotten). A password holding a raw `/ ? # @` makes the URL ambiguous; then every
 * reading's secret is hidden. A string that is not `scheme://…` is not shown at all.
 */
export function redactUrl(url: string): string {
  if (typeof url !== "string") return NOT_A_URL;
  if (!SCHEME.test(url)) return NOT_A_URL;
  return render(url, secretSpans(url));
}

/**
 * The passwords a URL carries, as they are written in it and percent-decoded: what must
 * never appear in a message. Empty when it holds none.
 */
export function secretsOf(url: string): string[] {
  if (typeof url !== "string") return [];
  if (!SCHEME.test(url)) return url === "" ? [] : [url];
  const found = new Set<string>();
  for (const span of secretSpans(url)) {
    const raw = url.slice(span.start, span.end);
    const value = span.kind === "drop" ? raw.slice(1) : raw; // a dropped password starts with its ":"
    for (const form of formsOf(value)) found.add(form);
  }
  return [...found].filter((s) => s !== "" && s !== HIDDEN);
}

/**
 * `text` with the secrets removed: `url` (when given) shown redacted, its passwords and
 * PGPASSWORD (from `env` and from this process) replaced by `***` wherever they appear,
 * in raw, percent-encoded, percent-decoded or JSON-escaped form, and every other
 * `scheme://…` in the text redacted by redactUrl. A password that also appears in the
 * redacted URL (a user named like their password) is left where it is: it is not shown
 * as a password there, and hiding it would hide the user or host too.
 */
export function redactSecrets(text: string, url?: string | readonly (string | undefined)[], env: { PGPASSWORD?: string } = process.env): string {
  let out = String(text);
  const urls = (Array.isArray(url) ? url : [url]).filter((u): u is string => typeof u === "string" && u !== "");
  let visible = "";
  const secrets = new Set<string>();
  for (const each of [...urls].sort((a, b) => b.length - a.length)) {
    const shown = redactUrl(each);
    out = out.split(each).join(shown);
    visible += `${shown}\n`;
    for (const secret of secretsOf(each)) secrets.add(secret);
  }
  for (const password of [env.PGPASSWORD, process.env.PGPASSWORD]) {
    if (password) for (const form of formsOf(password)) secrets.add(form);
  }
  const scrubbed = [...secrets]
    .filter((s) => s.length >= MIN_SCRUBBED_LENGTH && !visible.includes(s))
    .sort((a, b) => b.length - a.length);
  for (const secret of scrubbed) out = out.split(secret).join(HIDDEN);
  return out.replace(URL_IN_TEXT, (found) => {
    let end = found.length;
    while (end > 0 && TRAILING.includes(found[end - 1]!)) end--;
    return redactUrl(found.slice(0, end)) + found.slice(end);
  });
}

/**
 * The error itself when nothing it prints (message, stack, own properties, `cause`
 * chain, as util.inspect shows them) holds a secret of `url` or PGPASSWORD; otherwise a
 * copy of the same class with every string redacted (recursively through `cause`,
 * `errors` and plain objects), so `instanceof` and `code` still work.
 */
export function redactError<T>(error: T, url?: string | readonly (string | undefined)[], env: { PGPASSWORD?: string } = process.env): T {
  if (typeof error === "string") return redactSecrets(error, url, env) as T;
  if (typeof error !== "object" || error === null) return error;
  let printed: string;
  try {
    printed = `${inspect(error, { depth: 10 })}\n${String(error)}`;
  } catch {
    printed = "";
  }
  const printedClean = printed !== "" && redactSecrets(printed, url, env) === printed;
  return printedClean ? error : (copyRedacted(error, url, env, new Map()) as T);
}

function copyRedacted(value: unknown, url: string | readonly (string | undefined)[] | undefined, env: { PGPASSWORD?: string }, seen: Map<object, unknown>): unknown {
  if (typeof value === "string") return redactSecrets(value, url, env);
  if (typeof value !== "object" || value === null) return value;
  if (seen.has(value)) return seen.get(value);
  const isError = value instanceof Error;
  const isPlain = Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null;
  if (!isError && !isPlain) return value; // a Buffer, a Date, a class instance: kept as is
  const copy: object = Array.isArray(value) ? [] : Object.create(Object.getPrototypeOf(value) as object | null);
  seen.set(value, copy);
  for (const key of Reflect.ownKeys(value)) {
    const descriptor = Object.getOwnPropertyDescriptor(value, key)!;
    if ("value" in descriptor) descriptor.value = copyRedacted(descriptor.value, url, env, seen);
    Object.defineProperty(copy, key, descriptor);
  }
  return copy;
}

// --- Where the secrets are -------------------------------------------------------------

interface Span {
  start: number;
  end: number;
  /** "drop": a user-info password with its ":", removed; "hide": replaced by ***. */
  kind: "drop" | "hide";
}

/**
 * The spans of `url` that are (or, in an ambiguous URL, may be) secret. Two readings:
 * the well-formed one (the authority ends at the first / ? #, user info at its last @),
 * and, when an @ comes after that, the reading of a password holding a raw / ? # @
 * (user info up to the last @ of the whole string). Both readings' secrets are hidden.
 */
function secretSpans(url: string): Span[] {
  const spans: Span[] = [];
  const begin = url.indexOf("://") + 3;
  const authorityEnd = indexOfAny(url, "/?#", begin);
  const authorityAt = url.lastIndexOf("@", authorityEnd - 1);
  let hostStart = begin;
  if (authorityAt >= begin) {
    const colon = url.indexOf(":", begin);
    // A password already shown as *** (redacting twice) stays ***: it tells a password was there.
    if (colon !== -1 && colon < authorityAt && url.slice(colon + 1, authorityAt) !== HIDDEN) {
      spans.push({ start: colon, end: authorityAt, kind: "drop" });
    }
    hostStart = authorityAt + 1;
  }
  spans.push(...hostSpans(url, hostStart, authorityEnd), ...tailSpans(url, authorityEnd));

  const lastAt = url.lastIndexOf("@");
  if (lastAt >= authorityEnd) {
    // A raw / ? # in a password, or an @ in the path, query or fragment: hide what the
    // other reading takes for a password too, and the query after the last @.
    const userEnd = indexOfAny(url, ":", begin);
    if (userEnd < lastAt) spans.push({ start: userEnd + 1, end: lastAt, kind: "hide" });
    const tailStart = indexOfAny(url, "/?#", lastAt + 1);
    spans.push(...hostSpans(url, lastAt + 1, tailStart), ...tailSpans(url, tailStart));
  }
  return spans.filter((s) => s.end > s.start || s.kind === "drop");
}

/** Hosts `h1:5432,[::1]:5433`: a port that is not a number may be a password (`u:pw` with the host forgotten). */
function hostSpans(url: string, start: number, end: number): Span[] {
  const spans: Span[] = [];
  let hostStart = start;
  for (const host of url.slice(start, end).split(",")) {
    const close = host.startsWith("[") ? host.indexOf("]") : -1;
    const colon = host.indexOf(":", close + 1);
    if (colon !== -1 && !/^[0-9]*$/.test(host.slice(colon + 1))) {
      spans.push({ start: hostStart + colon + 1, end: hostStart + host.length, kind: "hide" });
    }
    hostStart += host.length + 1;
  }
  return spans;
}

/** Path, query and fragment from `start`: password-like parameters' values, and the fragment. */
function tailSpans(url: string, start: number): Span[] {
  const spans: Span[] = [];
  const hash = url.indexOf("#", start);
  const queryEnd = hash === -1 ? url.length : hash;
  const question = url.indexOf("?", start);
  if (question !== -1 && question < queryEnd) {
    let paramStart = question + 1;
    while (paramStart <= queryEnd) {
      let paramEnd = indexOfAny(url, "&;", paramStart);
      if (paramEnd > queryEnd) paramEnd = queryEnd;
      const equals = url.slice(paramStart, paramEnd).indexOf("=");
      if (equals !== -1 && SECRET_PARAM.test(decode(url.slice(paramStart, paramStart + equals)))) {
        spans.push({ start: paramStart + equals + 1, end: paramEnd, kind: "hide" });
      }
      paramStart = paramEnd + 1;
    }
  }
  if (hash !== -1 && hash + 1 < url.length) spans.push({ start: hash + 1, end: url.length, kind: "hide" });
  return spans;
}

/** The URL with the spans (merged where they overlap) removed or replaced by ***. */
function render(url: string, spans: Span[]): string {
  const sorted = [...spans].sort((a, b) => a.start - b.start || b.end - a.end);
  let out = "";
  let at = 0;
  for (let i = 0; i < sorted.length; ) {
    const first = sorted[i]!;
    let end = first.end;
    let allDrop = first.kind === "drop";
    let j = i + 1;
    for (; j < sorted.length && sorted[j]!.start <= end; j++) {
      end = Math.max(end, sorted[j]!.end);
      if (sorted[j]!.kind !== "drop") allDrop = false;
    }
    const start = Math.max(first.start, at);
    out += url.slice(at, start);
    if (!allDrop) out += first.kind === "drop" ? `:${HIDDEN}` : HIDDEN;
    at = Math.max(end, at);
    i = j;
  }
  return out + url.slice(at);
}

// --- Helpers ---------------------------------------------------------------------------

function indexOfAny(text: string, chars: string, from: number): number {
  for (let i = from; i < text.length; i++) if (chars.includes(text[i]!)) return i;
  return text.length;
}

/** Percent-decoding that never throws: a malformed escape is left as written. */
function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text.replace(/(%[0-9A-Fa-f]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return run;
      }
    });
  }
}

/** The ways a secret may be written in a message: raw, decoded (with + as space too), encoded, JSON-escaped. */
function formsOf(secret: string): string[] {
  const forms = new Set<string>([secret]);
  for (const value of [decode(secret), decode(secret.replace(/\+/g, " "))]) forms.add(value);
  for (const value of [...forms]) {
    forms.add(encodeURIComponent(value));
    forms.add(JSON.stringify(value).slice(1, -1));
    forms.add(inspect(value).slice(1, -1)); // util.inspect escapes quotes and backslashes its own way
    forms.add(userInfoEncoded(value));
  }
  return [...forms].filter((s) => s !== "");
}

/** The value as WHATWG URL writes a password (its own percent-encode set, not encodeURIComponent's). */
function userInfoEncoded(value: string): string {
  try {
    const url = new URL("postgres://host");
    url.password = value;
    return url.password;
  } catch {
    return value;
  }
}
