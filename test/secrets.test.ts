// No password, in any form a connection string can carry one, is ever printed: not by
// redactUrl, not in an error Engine.open rejects with (message, String(), util.inspect
// with its cause chain and own properties), not on the console, not in an 'error' event,
// and not by the `pgtide` command (stdout, stderr, --help), in this process or as one.
import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import path from "node:path";
import { PassThrough } from "node:stream";
import { format, inspect } from "node:util";
import fc from "fast-check";
import postgres from "postgres";
import { beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../src/cli/runCli.js";
import { databaseUrlProblem } from "../src/db/databaseUrl.js";
import { NOT_A_URL, redactError, redactSecrets, redactUrl, secretsOf } from "../src/db/redact.js";
import { Engine, InvalidArgumentError, PgtideError } from "../src/index.js";
import { databaseUrl, openEngine, rejectionOf, uniqueSchema, within } from "./support/engines.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = ["--import", "tsx", path.join(ROOT, "src/cli/main.ts")];
const e = encodeURIComponent;

/** The test database's host:port, user and database, for URLs that must reach it (trust auth ignores passwords). */
const real = new URL(databaseUrl);
const REAL_HOST = `${real.hostname}:${real.port || 5432}`;
const REAL_USER = decodeURIComponent(real.username) || "postgres";
const REAL_DB = real.pathname.slice(1) || "postgres";
/** Nothing listens there: connection refused at once. */
const REFUSED = "127.0.0.1:1";

// --- What counts as a leak -------------------------------------------------------------

/** How a password may be written: raw, encodeURIComponent, WHATWG's user-info encoding, JSON- and inspect-escaped. */
function formsOf(secret: string): string[] {
  const forms = new Set([secret]);
  try {
    forms.add(decodeURIComponent(secret)); // a password written percent-encoded is this one
  } catch {
    // not an encoding
  }
  for (const form of [...forms]) {
    const url = new URL("postgres://h");
    url.password = form;
    for (const f of [e(form), url.password, JSON.stringify(form).slice(1, -1), inspect(form).slice(1, -1)]) forms.add(f);
  }
  return [...forms];
}

const SEPARATORS = ["@", ":", "/", "?", "#", "%", "&", "=", "+", " ", ",", ";", "'", '"', "\\", "[", "]", "$"];
const SEPARATOR = new RegExp(`[${SEPARATORS.map((c) => `\\${c}`).join("")}]`);

/** The leaked forms of `secret` found in `text`: the whole secret and each run of it between URL-special characters. */
function leaksOf(text: string, secret: string): string[] {
  const parts = [secret, ...secret.split(SEPARATOR).filter((p) => p.length >= 4)];
  return [...new Set(parts.flatMap(formsOf))].filter((form) => form.length >= 4 && text.includes(form));
}

function expectNoLeak(text: string, secrets: string[], where: string): void {
  for (const secret of secrets) {
    expect(leaksOf(text, secret), `${where} shows ${JSON.stringify(secret)}:\n${text}`).toEqual([]);
  }
}

/** Everything an error prints: message, String(), util.inspect (cause chain, own properties). */
function printedError(error: unknown): string {
  return [(error as Error)?.message, String(error), inspect(error, { depth: 10 })].join("\n");
}

// What console.* and process warnings print goes to every capture running at the time
// (captures may overlap: they share one hook, installed while any is running).
const CONSOLE_METHODS = ["error", "warn", "log", "info", "debug", "trace"] as const;
const captures = new Set<string[]>();
let uninstall: (() => void) | undefined;

function startCapture(): string[] {
  if (captures.size === 0) {
    const saved = CONSOLE_METHODS.map((m) => console[m]);
    const print = (text: string) => captures.forEach((lines) => lines.push(text));
    for (const m of CONSOLE_METHODS) console[m] = (...args: unknown[]) => print(format(...args));
    const onWarning = (warning: Error) => print(inspect(warning, { depth: 10 }));
    process.on("warning", onWarning);
    uninstall = () => {
      CONSOLE_METHODS.forEach((m, i) => (console[m] = saved[i]!));
      process.off("warning", onWarning);
    };
  }
  const lines: string[] = [];
  captures.add(lines);
  return lines;
}

function stopCapture(lines: string[]): string {
  captures.delete(lines);
  if (captures.size === 0) uninstall?.();
  return lines.join("\n");
}

/** Collects what console.* and process warnings print while `fn` runs. */
async function capturingConsole<T>(fn: () => Promise<T>): Promise<{ result: T; printed: string }> {
  const lines = startCapture();
  try {
    const result = await fn();
    return { result, printed: stopCapture(lines) };
  } catch (error) {
    stopCapture(lines);
    throw error;
  }
}

// --- Generated passwords ------------------------------------------------------------------

// Runs of letters with no hex digit (so a raw "%" never makes an escape) and one non-ASCII
// character each, which no message holds unless it leaks; joined by URL-special characters.
const ASCII = [..."QZXJKVWYqzxjkvwy"];
const UNICODE = ["é", "ß", "Ä", "ñ", "漢", "字", "€", "😀"];
const run = fc
  .tuple(fc.string({ unit: fc.constantFrom(...ASCII), minLength: 3, maxLength: 6 }), fc.constantFrom(...UNICODE), fc.nat(6))
  .map(([ascii, wide, at]) => ascii.slice(0, at) + wide + ascii.slice(at));
const passwordWith = (separators: string[]) =>
  fc.tuple(run, fc.array(fc.tuple(fc.constantFrom(...separators), run), { maxLength: 3 }))
    .map(([first, rest]) => first + rest.map(([sep, r]) => sep + r).join(""));
/** Any URL-special character, as a password may hold it (raw in a malformed URL). */
const password = passwordWith(SEPARATORS);
/** Characters a raw query value may hold without ending the parameter (& ; # + and space would). */
const queryPassword = passwordWith(["@", ":", "/", "?", ",", "$", "[", "]", "'"]);

// --- The forms a connection string carries a password in -------------------------------

interface Form {
  name: string;
  url: (pw: string, host: string) => string;
  password?: "query";
}

const FORMS: Form[] = [
  { name: "user info, percent-encoded", url: (pw, h) => `postgres://${REAL_USER}:${e(pw)}@${h}/${REAL_DB}` },
  { name: "user info, postgresql://", url: (pw, h) => `postgresql://${REAL_USER}:${e(pw)}@${h}/${REAL_DB}` },
  {
    name: "user info, as WHATWG URL writes it",
    url: (pw, h) => {
      const url = new URL(`postgres://${h}/${REAL_DB}`);
      url.username = REAL_USER;
      url.password = pw;
      return url.toString();
    },
  },
  { name: "user info, raw (malformed when it holds / ? # %)", url: (pw, h) => `postgres://${REAL_USER}:${pw}@${h}/${REAL_DB}` },
  { name: "?password=", url: (pw, h) => `postgres://${REAL_USER}@${h}/${REAL_DB}?password=${e(pw)}` },
  { name: "?sslpassword=", url: (pw, h) => `postgres://${REAL_USER}@${h}/${REAL_DB}?sslmode=disable&sslpassword=${e(pw)}` },
  { name: "?Password= repeated, mixed case", url: (pw, h) => `postgres://${REAL_USER}@${h}/${REAL_DB}?Password=${e(pw)}&application_name=x&PASSWORD=${e(pw)}` },
  { name: "?pass%77ord= (a percent-encoded name)", url: (pw, h) => `postgres://${REAL_USER}@${h}/${REAL_DB}?pass%77ord=${e(pw)}` },
  { name: "?password= raw", url: (pw, h) => `postgres://${REAL_USER}@${h}/${REAL_DB}?password=${pw}`, password: "query" },
  { name: "user info and ?password=", url: (pw, h) => `postgres://${REAL_USER}:${e(pw)}@${h}/${REAL_DB}?password=${e(pw)}` },
  { name: "several hosts", url: (pw, h) => `postgres://${REAL_USER}:${e(pw)}@${REFUSED},${h}/${REAL_DB}` },
];

const FIXED_PASSWORDS = ["s3cret-Pw", "Zq@:/?#é漢x", "p@ss:w/rd?x#y", "泉水😀密码🔑", "s%40cr%3Aet", "a b+c&d=e;f"];

describe("redactUrl", () => {
  it("removes the password from every form of URL, keeping the rest", () => {
    const cases: [string, string][] = [
      ["postgres://u:secret@h/db", "postgres://u@h/db"],
      ["postgresql://u:secret@h:5432/db?sslmode=require", "postgresql://u@h:5432/db?sslmode=require"],
      ["postgres://u:s%40cr%3Aet@h/db", "postgres://u@h/db"],
      ["postgres://u:sé€cret@h/db", "postgres://u@h/db"],
      ["postgres://u:p@ss@h/db", "postgres://u@h/db"],
      ["postgres://u:@h/db", "postgres://u@h/db"],
      ["postgres://u@h/db?password=secret", "postgres://u@h/db?password=***"],
      ["postgres://u@h/db?sslpassword=a&password=b&Password=c&pass%77ord=d&sslmode=disable", "postgres://u@h/db?sslpassword=***&password=***&Password=***&pass%77ord=***&sslmode=disable"],
      ["postgres://u:secret@h1:5432,h2:5433/db", "postgres://u@h1:5432,h2:5433/db"],
      ["postgres://u:pw@[::1]:5432,h:1/db", "postgres://u@[::1]:5432,h:1/db"],
      ["postgres:///db?host=/tmp&password=x", "postgres:///db?host=/tmp&password=***"],
      ["postgres://h/db?password=Q@W", "postgres://h/db?password=***"],
      // Malformed: a raw / ? # in the password, or the host forgotten.
      ["postgres://u:se/cret@h/db", "postgres://u:***@h/db"],
      ["postgres://u:12/34@h/db", "postgres://u:***@h/db"],
      ["postgres://u:a?b@h/db", "postgres://u:***@h/db"],
      ["postgres://u:a#b@h/db", "postgres://u:***"],
      ["postgres://u:secret", "postgres://u:***"],
      // Nothing secret: unchanged.
      ["postgres://postgres@127.0.0.1:5432/test", "postgres://postgres@127.0.0.1:5432/test"],
      ["postgres://[::1]:5432/db?sslmode=require", "postgres://[::1]:5432/db?sslmode=require"],
      // Not a URL: not shown at all.
      ["host=h password=secret", NOT_A_URL],
      ["secret", NOT_A_URL],
      ["", NOT_A_URL],
    ];
    for (const [url, shown] of cases) expect(redactUrl(url), url).toBe(shown);
  });

  it("never shows a generated password, in any form, whatever the URL", () => {
    fc.assert(
      fc.property(password, queryPassword, fc.constantFrom(...FORMS), (pw, qpw, form) => {
        const secret = form.password === "query" ? qpw : pw;
        const url = form.url(secret, "db.example.com:5432");
        const shown = redactUrl(url);
        expectNoLeak(shown, [secret], `redactUrl(${JSON.stringify(url)})`);
        expect(shown).toMatch(/^postgres(ql)?:\/\//);
        // Everything secretsOf finds is gone too, and the password is among what it finds.
        expect(secretsOf(url).some((s) => s.includes(secret) || e(s).includes(e(secret)) || secret.includes(s))).toBe(true);
        // A message quoting the URL, the password alone, or both, is scrubbed.
        const message = `cannot reach ${url}: auth failed for ${JSON.stringify(secret)} (${secret}) ${e(secret)}`;
        expectNoLeak(redactSecrets(message, url, {}), [secret], "redactSecrets");
      }),
      { numRuns: 2000 },
    );
  });

  it("redactSecrets removes PGPASSWORD and passwords of URLs it was not told about", () => {
    fc.assert(
      fc.property(password, password, (pgpassword, other) => {
        fc.pre(!pgpassword.includes(other) && !other.includes(pgpassword));
        const text = `PGPASSWORD is ${pgpassword}; also postgres://x:${e(other)}@h/db and postgresql://h/db?password=${e(other)}`;
        const out = redactSecrets(text, undefined, { PGPASSWORD: pgpassword });
        expectNoLeak(out, [pgpassword, other], "redactSecrets");
      }),
      { numRuns: 500 },
    );
  });

  it("redactError keeps a clean error as it is, and copies a leaking one (same class and code) without the password", async () => {
    const clean = new Error("connect ECONNREFUSED 127.0.0.1:1");
    expect(redactError(clean, "postgres://u:s3cret-pw@127.0.0.1:1/db")).toBe(clean);
    // The driver's own parse error carries the whole URL in `input`.
    const url = "postgres://u:se/cret-pw@127.0.0.1:1/db";
    let raw: unknown;
    try {
      postgres(url);
    } catch (error) {
      raw = error;
    }
    expect(inspect(raw)).toContain("cret-pw"); // what the driver prints, before
    const wrapped = new PgtideError("CONNECTION", `cannot open ${url}`, { cause: raw });
    const redacted = redactError(wrapped, url);
    expect(redacted).toBeInstanceOf(PgtideError);
    expect(redacted.code).toBe("CONNECTION");
    expect(redacted.cause).toBeInstanceOf(TypeError);
    expect((redacted.cause as { code?: string }).code).toBe("ERR_INVALID_URL");
    expectNoLeak(printedError(redacted), ["se/cret-pw", "cret-pw"], "redactError");
  });

  it("databaseUrlProblem refuses what postgres.js cannot parse, before the driver echoes it", () => {
    expect(databaseUrlProblem("postgres://u:pw@h/db")).toBeUndefined();
    expect(databaseUrlProblem("postgres://u:p@ss@h/db")).toBeUndefined(); // WHATWG and the driver read it alike
    expect(databaseUrlProblem("postgres://u:pw@h1:1,h2:2/db")).toBeUndefined();
    expect(databaseUrlProblem("mysql://u:pw@h/db")).toMatch(/postgres:\/\//);
    for (const bad of [
      "postgres://u:se/cret@h/db", "postgres://u:a#b@h/db", "postgres://u:50%zz@h/db", "postgres://u:p@ss@h1,h2/db", "postgres://u:secret",
      // Found by the property below: read as host "QéQQ", the driver's ENOTFOUND quoted part of the password.
      "postgres://postgres:éQQQ@QéQQ/secret@127.0.0.1:1/test",
      "postgres://postgres@[::1]:5432/secret", // the driver would look up the host "["
    ]) {
      expect(databaseUrlProblem(bad), bad).toBeDefined();
      expect(databaseUrlProblem(bad), bad).not.toContain("secret");
    }
  });
});

// --- Engine.open ---------------------------------------------------------------------------

async function openRejection(databaseUrlOption: string | undefined, env: Record<string, string> = {}): Promise<{ error: unknown; printed: string }> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    const { result: error, printed } = await capturingConsole(() =>
      within(20_000, "Engine.open to reject", rejectionOf(Engine.open({ databaseUrl: databaseUrlOption, schema: "never_created", retryTimeoutMs: 100 }))),
    );
    return { error, printed: `${printedError(error)}\n${printed}` };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe("Engine.open", () => {
  it("an unreachable database (connection refused): no form of the password in the rejection or on the console", async () => {
    for (const form of FORMS) {
      for (const pw of FIXED_PASSWORDS) {
        const url = form.url(pw, REFUSED);
        if (form.name.startsWith("several hosts")) continue; // every host refusing: see "several hosts" below
        const { printed } = await openRejection(url);
        expectNoLeak(printed, [pw], `Engine.open(${form.name}, ${JSON.stringify(pw)})`);
      }
    }
  });

  it("a property over generated passwords: connection refused, or an invalid URL refused up front", async () => {
    await fc.assert(
      fc.asyncProperty(password, queryPassword, fc.constantFrom(...FORMS.filter((f) => !f.name.startsWith("several"))), async (pw, qpw, form) => {
        const secret = form.password === "query" ? qpw : pw;
        const url = form.url(secret, REFUSED);
        const { error, printed } = await openRejection(url);
        expect(error).toBeInstanceOf(Error);
        expectNoLeak(printed, [secret], `Engine.open(${JSON.stringify(url)})`);
      }),
      { numRuns: 60 },
    );
  });

  it("a bad host name (ENOTFOUND)", async () => {
    for (const form of FORMS.filter((f) => !f.name.startsWith("several"))) {
      const pw = "Zq@:/?#é漢x";
      const { error, printed } = await openRejection(form.url(pw, "no-such-host.invalid:5432"));
      expect(error).toBeInstanceOf(Error);
      expectNoLeak(printed, [pw], `Engine.open(${form.name}) at a bad host`);
    }
  });

  it("an invalid URL is refused with InvalidArgumentError that does not quote the password", async () => {
    const cases = [
      "postgres://u:se/cret-pw@127.0.0.1:1/db", // the driver's ERR_INVALID_URL would carry it in `input`
      "postgres://u:sec#ret-pw@127.0.0.1:1/db",
      "postgres://u:secret-pw%zz@127.0.0.1:1/db",
      "postgres://u:p@secret-pw@127.0.0.1:1,127.0.0.1:2/db", // several hosts: the driver would look up "secret-pw@127.0.0.1"
      "postgres://u:secret-pw", // host forgotten
      "mysql://u:secret-pw@h/db?password=secret-pw",
      "host=h password=secret-pw", // a keyword/value string is no URL
      "secret-pw", // DATABASE_URL set to the password by mistake
      "postgres://u@short/db?password=secret-pw", // fine as a URL, but 40 characters cut by describe() left it whole
    ];
    for (const url of cases) {
      const { error, printed } = await openRejection(url);
      if (url.endsWith("?password=secret-pw") && url.startsWith("postgres://u@short")) {
        expect(error).not.toBeInstanceOf(InvalidArgumentError); // a valid URL: it fails on connecting
      } else {
        expect(error, url).toBeInstanceOf(InvalidArgumentError);
        expect((error as Error).message).toMatch(/^databaseUrl /);
      }
      expectNoLeak(printed, ["secret-pw", "se/cret-pw", "sec#ret-pw"], `Engine.open(${JSON.stringify(url)})`);
    }
  });

  it("DATABASE_URL and PGPASSWORD from the environment are not echoed", async () => {
    const pw = "Env-s3cret-é";
    const fromEnv = await openRejection(undefined, { DATABASE_URL: `postgres://u:${e(pw)}@${REFUSED}/db?password=${e(pw)}` });
    expectNoLeak(fromEnv.printed, [pw], "Engine.open with DATABASE_URL");
    const badEnv = await openRejection(undefined, { DATABASE_URL: `postgres://u:${pw}/db` });
    expect(badEnv.error).toBeInstanceOf(InvalidArgumentError);
    expectNoLeak(badEnv.printed, [pw], "Engine.open with a malformed DATABASE_URL");
    const pgpassword = await openRejection(`postgres://u@${REFUSED}/db`, { PGPASSWORD: pw });
    expectNoLeak(pgpassword.printed, [pw], "Engine.open with PGPASSWORD");
  });

  it("a reachable database that refuses: unknown database, unknown startup parameter", async () => {
    const pw = "Reach-s3cret-漢";
    const cases = [
      `postgres://${REAL_USER}:${e(pw)}@${REAL_HOST}/no_such_database_here`,
      `postgres://${REAL_USER}@${REAL_HOST}/${REAL_DB}?password=${e(pw)}`, // postgres.js sends it as a startup parameter
      `postgres://${REAL_USER}@${REAL_HOST}/${REAL_DB}?sslpassword=${e(pw)}&Password=${e(pw)}`,
    ];
    for (const url of cases) {
      const { error, printed } = await openRejection(url);
      expect(error).toBeInstanceOf(Error);
      expectNoLeak(printed, [pw], `Engine.open(${url})`);
    }
  });

  it("a connect timeout (a server that accepts and never answers)", async () => {
    const held = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      held.add(socket);
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    const pw = "Slow-s3cret-ß";
    try {
      const [engine, cli, hosts] = await Promise.all([
        openRejection(`postgres://u:${e(pw)}@127.0.0.1:${port}/db?password=${e(pw)}`),
        cliInProcess(["status", "w", "--database-url", `postgres://u:${e(pw)}@127.0.0.1:${port}/db?password=${e(pw)}`]),
        // Several hosts, all refusing: the driver tries them in turn for ever; the command gives up.
        cliInProcess(["status", "w", "--database-url", `postgres://u:${e(pw)}@${REFUSED},127.0.0.1:2/db?password=${e(pw)}`]),
      ]);
      expect(hosts).toMatchObject({ code: 1, stderr: expect.stringMatching(/^pgtide: cannot reach Postgres at postgres:\/\/u@127\.0\.0\.1:1,127\.0\.0\.1:2\/db\?password=\*\*\*: no answer within 5 s/) });
      expectNoLeak(printedBy(hosts), [pw], "pgtide on several hosts, all refusing");
      // Engine.open gives up at retryTimeoutMs, before the driver's 10 s connect timeout.
      expect(engine.error).toMatchObject({ code: "CONNECTION", message: expect.stringMatching(/no answer within \d+ ms/) });
      expectNoLeak(engine.printed, [pw], "Engine.open timing out");
      expect(cli.code).toBe(1);
      expect(cli.stderr).toMatch(/CONNECT_TIMEOUT/);
      expectNoLeak(cli.stdout + cli.stderr + cli.console, [pw], "pgtide timing out");
    } finally {
      for (const s of held) s.destroy();
      server.close();
    }
  }, 40_000);

  it("several hosts, one reachable: the engine opens, and its errors do not show the password", async () => {
    const pw = "Multi-s3cret-€";
    const schema = uniqueSchema("secrets");
    const url = `postgres://${REAL_USER}:${e(pw)}@${REFUSED},${REAL_HOST}/${REAL_DB}`;
    const { result: engine, printed } = await capturingConsole(() => openEngine({ databaseUrl: url, schema }));
    const missing = await rejectionOf(engine.retrieveWorkflow("no-such-workflow").getStatus());
    expect(missing).toBeInstanceOf(PgtideError);
    expectNoLeak(`${printed}\n${printedError(missing)}`, [pw], "an engine on several hosts");
  });

  it("an 'error' event after the connection is lost does not show the password", async () => {
    const pw = "Lost-s3cret-ñ";
    const proxy = await tcpProxy(REAL_HOST);
    const schema = uniqueSchema("secrets");
    const url = `postgres://${REAL_USER}:${e(pw)}@127.0.0.1:${proxy.port}/${REAL_DB}?application_name=x`;
    const { result, printed } = await capturingConsole(async () => {
      const engine = await openEngine({ databaseUrl: url, schema, heartbeatMs: 200 });
      const failed = once(engine, "error");
      proxy.close();
      const [error] = await within(20_000, "an 'error' event", failed);
      await engine.close();
      return error as unknown;
    });
    expectNoLeak(`${printed}\n${printedError(result)}`, [pw], "the 'error' event");
  });

  it("util.inspect(engine) does not show the password", async () => {
    const pw = "Inspect-s3cret-字";
    const engine = await openEngine({ databaseUrl: `postgres://${REAL_USER}:${e(pw)}@${REAL_HOST}/${REAL_DB}`, schema: uniqueSchema("secrets") });
    expectNoLeak(inspect(engine, { depth: 6 }), [pw], "util.inspect(engine)");
  });
});

// --- The pgtide command -------------------------------------------------------------------

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  console: string;
}

/** runCli in this process; DATABASE_URL only if `env` sets it. */
async function cliInProcess(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const stdout = new PassThrough().setEncoding("utf8");
  const stderr = new PassThrough().setEncoding("utf8");
  const { result: code, printed } = await capturingConsole(() => within(20_000, `pgtide ${args.join(" ")}`, runCli(args, { stdout, stderr, env })));
  return { code, stdout: (stdout.read() as string | null) ?? "", stderr: (stderr.read() as string | null) ?? "", console: printed };
}

/** The command as a process; its environment has no DATABASE_URL or PGPASSWORD unless `env` sets them. */
async function cliProcess(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const { DATABASE_URL: _, PGPASSWORD: __, ...rest } = process.env;
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, env: { ...rest, ...env } });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const [code] = await within(30_000, `pgtide ${args.join(" ")}`, once(child, "close"));
  return { code: code as number | null, stdout, stderr, console: "" };
}

const printedBy = (run: CliRun) => `${run.stdout}\n${run.stderr}\n${run.console}`;

describe("pgtide", () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await openEngine({ schema: uniqueSchema("secrets_cli") });
  });

  /** Each command, failing: `reachable` on the test database (unknown workflow, or a missing schema for list). */
  function commands(reachable: boolean): string[][] {
    const schema = reachable ? engine.schema : "pgtide";
    return [
      ["tail", "no-such-workflow", "k", "--schema", schema],
      ["progress", "no-such-workflow", "k", "--schema", schema],
      ["status", "no-such-workflow", "--schema", schema],
      ["list", "--schema", reachable ? "no_such_schema" : schema],
    ];
  }

  it("prints exactly where it failed, with the password hidden", async () => {
    const run = await cliInProcess(["status", "w", "--database-url", "postgres://me:s3cret-pw@127.0.0.1:1/nowhere?sslmode=disable&password=s3cret-pw2"]);
    expect(run).toMatchObject({
      code: 1,
      stdout: "",
      stderr: "pgtide: cannot reach Postgres at postgres://me@127.0.0.1:1/nowhere?sslmode=disable&password=***: connect ECONNREFUSED 127.0.0.1:1\n",
    });
    const missing = await cliInProcess(["status", "nope", "--schema", engine.schema, "--database-url", `postgres://${REAL_USER}:s3cret-pw@${REAL_HOST}/${REAL_DB}`]);
    expect(missing.stderr).toBe(`pgtide: workflow "nope" does not exist in schema "${engine.schema}" at postgres://${REAL_USER}@${REAL_HOST}/${REAL_DB}\n`);
  });

  it("every command, every form of password, unreachable or reachable but wrong (in this process)", async () => {
    for (const reachable of [false, true]) {
      for (const form of FORMS) {
        for (const pw of ["Zq@:/?#é漢x", "s%40cr%3Aet-XY"]) {
          const url = form.url(pw, reachable ? REAL_HOST : REFUSED);
          // Several hosts all refusing: the 5 s deadline, tested once with the timeouts.
          if (!reachable && form.name.startsWith("several")) continue;
          for (const command of commands(reachable)) {
            const run = await cliInProcess([...command, "--database-url", url]);
            expect(run.code, `${form.name}: ${command.join(" ")}\n${run.stderr}`).not.toBe(0);
            expect(run.stderr).toMatch(/^pgtide: /);
            expectNoLeak(printedBy(run), [pw], `pgtide ${command.join(" ")} (${form.name}, ${reachable ? "reachable" : "unreachable"})`);
          }
        }
      }
    }
  }, 180_000);

  it("a property over generated passwords: --database-url or DATABASE_URL, unreachable", async () => {
    await fc.assert(
      fc.asyncProperty(password, queryPassword, fc.constantFrom(...FORMS), fc.boolean(), async (pw, qpw, form, viaEnv) => {
        const secret = form.password === "query" ? qpw : pw;
        const url = form.url(secret, form.name.startsWith("several") ? REAL_HOST : REFUSED);
        const args = ["status", "w", "--schema", "no_such_schema"];
        const run = viaEnv ? await cliInProcess(args, { DATABASE_URL: url }) : await cliInProcess([...args, "--database-url", url]);
        expect(run.code).not.toBe(0);
        expectNoLeak(printedBy(run), [secret], `pgtide with ${JSON.stringify(url)}`);
      }),
      { numRuns: 60 },
    );
  }, 120_000);

  it("arguments echoed in usage errors: a URL in the wrong place, a malformed URL, a bad option value", async () => {
    const pw = "Usage-s3cret-é";
    const url = `postgres://u:${e(pw)}@h/db?password=${e(pw)}`;
    const runs = await Promise.all([
      cliInProcess(["status", "w", url]), // forgot --database-url
      cliInProcess([url]), // a URL where the command goes
      cliInProcess(["tail", "w", "k", "--from", url, "--database-url", `postgres://${REAL_HOST}/db`]),
      cliInProcess(["list", "--status", url, "--database-url", `postgres://${REAL_HOST}/db`]),
      cliInProcess(["status", "w", "--database-url", `mysql://u:${e(pw)}@h/db?password=${e(pw)}`]),
      cliInProcess(["status", "w", "--database-url", `postgres://u:${pw}@h/db`]), // raw: / is fine, but é is…; malformed or not, hidden
      cliInProcess(["status", "w", "--database-url", `postgres://u:a/${pw}@h/db`]),
      cliInProcess(["status", "w", "--database-url", `host=h password=${pw}`]),
      cliInProcess(["status", "w"], { DATABASE_URL: `postgres://u:${pw}#x@h/db` }),
      cliInProcess(["status", "w", "--databse-url", url]),
    ]);
    for (const run of runs) {
      expect(run.code).not.toBe(0);
      expectNoLeak(printedBy(run), [pw], "a usage error");
    }
    expect(runs[6]!.stderr).toMatch(/^pgtide: --database-url is not a valid URL .*, got postgres:\/\/u:\*\*\*@h\/db\n/);
    expect(runs[7]!.stderr).toMatch(/^pgtide: --database-url must be a postgres:\/\/ or postgresql:\/\/ URL, got \(not a URL/);
    expect(runs[8]!.stderr).toMatch(/^pgtide: DATABASE_URL is not a valid URL/);
  });

  it("as a process: --database-url, DATABASE_URL, PGPASSWORD, --help", async () => {
    const pw = "Proc-s3cret-漢";
    const withPassword = `postgres://${REAL_USER}:${e(pw)}@${REAL_HOST}/${REAL_DB}`;
    const runs = await Promise.all([
      cliProcess(["status", "w", "--database-url", `postgres://u:${e(pw)}@${REFUSED}/db?password=${e(pw)}`]),
      cliProcess(["tail", "no-such-workflow", "k", "--schema", engine.schema], { DATABASE_URL: withPassword }),
      cliProcess(["list", "--schema", "no_such_schema"], { DATABASE_URL: `${withPassword}?sslpassword=${e(pw)}` }),
      cliProcess(["status", "w", "--database-url", `postgres://u:a/${pw}@h/db`]),
      cliProcess(["status", "no-such-workflow", "--schema", engine.schema, "--database-url", `postgres://${REAL_USER}@${REAL_HOST}/${REAL_DB}`], { PGPASSWORD: pw }),
      cliProcess(["status", "w", "--database-url", `postgres://u@${REFUSED}/db`], { PGPASSWORD: pw }),
      cliProcess(["--help"], { DATABASE_URL: withPassword, PGPASSWORD: pw }),
      cliProcess(["tail", "--help"], { DATABASE_URL: withPassword, PGPASSWORD: pw }),
      cliProcess(["status", "--help", "--database-url", withPassword], { PGPASSWORD: pw }),
    ]);
    for (const [i, run] of runs.entries()) {
      expect(run.code, `run ${i}: ${run.stderr}`).toBe(i >= 6 ? 0 : i === 3 ? 2 : 1);
      expectNoLeak(printedBy(run), [pw], `pgtide process ${i}`);
    }
    expect(runs[1]!.stderr).toBe(`pgtide: workflow "no-such-workflow" does not exist in schema "${engine.schema}" at postgres://${REAL_USER}@${REAL_HOST}/${REAL_DB}\n`);
    expect(runs[6]!.stdout).toMatch(/^Usage: pgtide <command>/);
  }, 60_000);
});

// --- Helpers -------------------------------------------------------------------------------

/** A TCP proxy to `target`; close() drops it and every connection through it. */
async function tcpProxy(target: string): Promise<{ port: number; close: () => void }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

