// The `pgtide` command as a process, against a real Postgres: tail, status, list, help,
// and the ways a run fails (unknown workflow, unreachable or lost database, bad usage).
import { spawn, execFile } from "node:child_process";
import { once } from "node:events";
import { cp, mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { PassThrough } from "node:stream";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../src/cli/runCli.js";
import type { Engine } from "../src/index.js";
import { databaseUrl, gate, openEngine, within } from "./support/engines.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = ["--import", "tsx", path.join(ROOT, "src/cli/main.ts")];

let engine: Engine;
let connection: string[];

beforeAll(async () => {
  engine = await openEngine();
  connection = ["--database-url", databaseUrl, "--schema", engine.schema];
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the command to its end; DATABASE_URL is unset unless `env` sets it. */
function pgtide(args: string[], env: Record<string, string> = {}, entry = CLI): Promise<Run> {
  const child = spawn(process.execPath, [...entry, ...args], { cwd: ROOT, env: cleanEnv(env) });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return within(20_000, `pgtide ${args.join(" ")}`, once(child, "close").then(([code]) => ({ code: code as number | null, stdout, stderr })));
}

/** The same command line run in this process (runCli), for the cases where a process adds nothing. */
async function inProcess(args: string[]): Promise<Run> {
  const stdout = new PassThrough().setEncoding("utf8");
  const stderr = new PassThrough().setEncoding("utf8");
  const code = await runCli(args, { stdout, stderr, env: {} });
  return { code, stdout: stdout.read() ?? "", stderr: stderr.read() ?? "" };
}

function cleanEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const { DATABASE_URL: _, ...rest } = process.env;
  return { ...rest, ...env };
}

describe("pgtide tail", () => {
  it("prints each entry as it is written, then exits 0 at the close", async () => {
    const values = ["hello", " world", { n: 1 }, 42, null];
    const gates = values.map(() => gate());
    const wf = engine.workflow("tail-live", async (ctx) => {
      for (const [i, v] of values.entries()) {
        await gates[i]!.promise;
        await ctx.writeStream("out", v);
      }
    });
    const handle = await wf.start();
    const child = spawn(process.execPath, [...CLI, "tail", handle.workflowId, "out", ...connection], { cwd: ROOT, env: cleanEnv({}) });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const exited = once(child, "close");
    const lines: string[] = [];
    gates[0]!.open();
    // Each value is written only once the previous one was printed: the output is live.
    for await (const line of createInterface({ input: child.stdout })) {
      lines.push(line);
      gates[lines.length]?.open();
    }
    const [code] = await within(10_000, "tail to exit", exited);
    expect(stderr).toBe("");
    expect(lines).toEqual(["hello", " world", '{"n":1}', "42", "null"]);
    expect(code).toBe(0);
  });

  it("--from N --json prints {offset, value} lines from offset N", async () => {
    const wf = engine.workflow("tail-json", async (ctx) => {
      for (const v of ["a", "b", "c", "d"]) await ctx.writeStream("s", v);
    });
    const handle = await wf.start();
    await handle.getResult();
    const run = await pgtide(["tail", handle.workflowId, "s", "--from", "2", "--json", ...connection]);
    expect(run).toEqual({ code: 0, stdout: '{"offset":2,"value":"c"}\n{"offset":3,"value":"d"}\n', stderr: "" });
  });

  it("exits 1 naming the workflow when it does not exist", async () => {
    const run = await pgtide(["tail", "no-such-workflow", "s", ...connection]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe(
      `pgtide: workflow "no-such-workflow" does not exist in schema "${engine.schema}" at ${new URL(databaseUrl).toString()}\n`,
    );
  });

  it("exits 1 with a message when the database is lost while it waits", async () => {
    // A TCP proxy in front of Postgres, shut down mid-tail: the database is gone for good.
    const sockets = new Set<net.Socket>();
    const target = new URL(databaseUrl);
    const proxy = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("error", () => {});
        s.on("close", () => sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const proxied = new URL(databaseUrl);
    proxied.hostname = "127.0.0.1";
    proxied.port = String((proxy.address() as net.AddressInfo).port);

    const release = gate();
    const wf = engine.workflow("tail-lost", async (ctx) => {
      await ctx.writeStream("s", "first");
      await release.promise;
    });
    const handle = await wf.start();
    const child = spawn(process.execPath, [...CLI, "tail", handle.workflowId, "s", "--database-url", proxied.toString(), "--schema", engine.schema], {
      cwd: ROOT, env: cleanEnv({}),
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const exited = once(child, "close");
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    expect((await within(10_000, "the first entry", lines.next())).value).toBe("first");
    proxy.close();
    for (const s of sockets) s.destroy();
    const [code] = await within(10_000, "tail to give up", exited);
    release.open();
    expect(code).toBe(1);
    expect(stderr).toMatch(new RegExp(`^pgtide: lost the connection to Postgres at postgres://[^ ]+:${proxied.port}/[^ ]*: .*ECONNREFUSED`));
  });
});

describe("pgtide status and list", () => {
  let done: string;
  let pending: string;
  const release = gate();
  beforeAll(async () => {
    const finished = engine.workflow("listed-done", async () => ({ answer: 42 }));
    const waiting = engine.workflow("listed-pending", async () => release.promise);
    const h = await finished.start();
    await h.getResult();
    done = h.workflowId;
    pending = (await waiting.start()).workflowId;
  });
  afterAll(() => release.open());

  it("status shows a workflow's row, as text or JSON, with DATABASE_URL from the environment", async () => {
    const text = await pgtide(["status", done, "--schema", engine.schema], { DATABASE_URL: databaseUrl });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^workflow  ${done}\nname      listed-done\nstatus    SUCCESS\nexecutor  local\n`));
    expect(text.stdout).toMatch(/\noutput    \{"answer":42\}\n$/);
    const json = await pgtide(["status", pending, "--json", ...connection]);
    expect(JSON.parse(json.stdout)).toMatchObject({ workflowId: pending, name: "listed-pending", status: "PENDING" });
  });

  it("list --status PENDING lists only pending workflows", async () => {
    const run = await pgtide(["list", "--status", "PENDING", ...connection]);
    expect(run.code).toBe(0);
    const [header, ...rows] = run.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^WORKFLOW ID +NAME +STATUS +UPDATED$/);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(new RegExp(`^${pending} +listed-pending +PENDING +\\d{4}-`));
    const all = await pgtide(["list", "--json", ...connection]);
    const ids = all.stdout.trimEnd().split("\n").map((line) => (JSON.parse(line) as { workflowId: string }).workflowId);
    expect(ids).toEqual(expect.arrayContaining([done, pending]));
  });
});

describe("help and bad usage", () => {
  it("--help describes the command and each subcommand, and exits 0", async () => {
    const top = await pgtide(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/^Usage: pgtide <command> \[options\]/);
    const names = ["tail", "progress", "status", "list"];
    // One as a process; the others' text comes from the same code, run in this process.
    const runs = [await pgtide(["tail", "--help"]), ...(await Promise.all(names.slice(1).map((name) => inProcess([name, "--help"]))))];
    for (const [i, name] of names.entries()) {
      expect(top.stdout).toMatch(new RegExp(`\n  ${name} +\\S`));
      expect(runs[i]!.code, name).toBe(0);
      expect(runs[i]!.stdout, name).toMatch(new RegExp(`^Usage: pgtide ${name}`));
      expect(runs[i]!.stdout, name).toMatch(/--database-url <url>/);
    }
  });

  it("exits 2 on bad usage, saying what is wrong", async () => {
    const [frob, missing, noDatabase, from, status] = await Promise.all([
      pgtide(["frob"]),
      inProcess(["tail", "w"]),
      inProcess(["tail", "w", "k"]),
      inProcess(["tail", "w", "k", "--from=-1", ...connection]),
      inProcess(["list", "--status", "DONE", ...connection]),
    ]);
    expect(frob).toMatchObject({ code: 2, stderr: expect.stringMatching(/^pgtide: unknown command "frob"/) });
    expect(missing).toMatchObject({ code: 2, stderr: expect.stringMatching(/^pgtide: missing <key>\nRun `pgtide tail --help`/) });
    expect(noDatabase).toMatchObject({ code: 2, stderr: expect.stringMatching(/^pgtide: no database: pass --database-url/) });
    expect(from).toMatchObject({ code: 2, stderr: expect.stringMatching(/^pgtide: --from must be a non-negative integer, got "-1"/) });
    expect(status).toMatchObject({ code: 2, stderr: expect.stringMatching(/^pgtide: --status must be one of PENDING, SUCCESS, ERROR, CANCELLED/) });
  });

  it("exits 1 when the database is unreachable or the schema does not exist, without printing a password", async () => {
    const [unreachable, schema] = await Promise.all([
      pgtide(["status", "w", "--database-url", "postgres://me:secret@127.0.0.1:1/nowhere"]),
      pgtide(["list", "--database-url", databaseUrl, "--schema", "no_such_schema"]),
    ]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^pgtide: cannot reach Postgres at postgres:\/\/me@127\.0\.0\.1:1\/nowhere: .*ECONNREFUSED/);
    expect(unreachable.stderr).not.toMatch(/secret/);
    expect(schema).toMatchObject({ code: 1, stderr: expect.stringMatching(/^pgtide: schema "no_such_schema" does not exist/) });
  });
});

describe("bin/pgtide.js", () => {
  it("runs the build in dist/, as installed from a fresh clone", async () => {
    // Build the package the way `npm install` (prepare) does, into a copy of its layout,
    // so this neither needs nor disturbs the working tree's dist/.
    const dir = await mkdtemp(path.join(tmpdir(), "pgtide-bin-"));
    try {
      await mkdir(path.join(dir, "bin"));
      await cp(path.join(ROOT, "bin/pgtide.js"), path.join(dir, "bin/pgtide.js"));
      await cp(path.join(ROOT, "package.json"), path.join(dir, "package.json"));
      await symlink(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
      await symlink(path.join(ROOT, "drizzle"), path.join(dir, "drizzle"));
      await promisify(execFile)(process.execPath, [
        path.join(ROOT, "node_modules/typescript/bin/tsc"), "-p", path.join(ROOT, "tsconfig.build.json"), "--outDir", path.join(dir, "dist"),
      ]).catch((error: { stdout?: string }) => {
        // Type errors elsewhere in the tree do not stop tsc from emitting; a missing entry does.
        if (!error.stdout) throw error;
      });
      const bin = [path.join(dir, "bin/pgtide.js")];
      const version = await pgtide(["--version"], {}, bin);
      const { version: expected } = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8")) as { version: string };
      expect(version).toEqual({ code: 0, stdout: `${expected}\n`, stderr: "" });
      const wf = engine.workflow("via-bin", async (ctx) => {
        await ctx.writeStream("s", "from the built binary");
      });
      const handle = await wf.start();
      await handle.getResult();
      const tail = await pgtide(["tail", handle.workflowId, "s", ...connection], {}, bin);
      expect(tail).toEqual({ code: 0, stdout: "from the built binary\n", stderr: "" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
