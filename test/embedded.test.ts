import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { appendFile, chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmbeddedPostgres } from "../src/db/embedded.js";
import { EmbeddedPostgresError } from "../src/errors.js";

const TIMEOUT = 60_000;
let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "pgtide-embedded-"));
  await chmod(root, 0o755); // Postgres runs as the `postgres` user and must reach its data dir
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function query<T extends object>(url: string, text: string): Promise<T[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return [...(await sql.unsafe<T[]>(text))];
  } finally {
    await sql.end();
  }
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, "utf8")); // zombies are gone
  } catch {
    return false;
  }
}

async function postmasterPid(dataDir: string): Promise<number> {
  const text = await readFile(path.join(dataDir, "postmaster.pid"), "utf8");
  return Number.parseInt(text.split("\n")[0] ?? "", 10);
}

async function childrenOf(pid: number): Promise<number[]> {
  const children: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return children;
}

/** A child process that starts embedded Postgres on `dataDir` and keeps running. */
async function startOwner(dataDir: string) {
  const script = path.join(root, "owner.mts");
  const moduleUrl = pathToFileURL(path.resolve("src/db/embedded.ts")).href;
  await writeFile(
    script,
    `import { readFileSync } from "node:fs";
import { startEmbeddedPostgres } from ${JSON.stringify(moduleUrl)};
const pg = await startEmbeddedPostgres({ dataDir: process.argv[2]! });
const pid = readFileSync(pg.dataDir + "/postmaster.pid", "utf8").split("\\n")[0];
console.log("POSTMASTER " + pid);
setInterval(() => {}, 1 << 30);
`,
  );
  const owner = spawn(process.execPath, ["--import", "tsx", script, dataDir], {
    cwd: process.cwd(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  owner.stdout.on("data", (chunk) => (stdout += chunk));
  owner.stderr.on("data", (chunk) => (stderr += chunk));
  try {
    await waitFor("the owner to report its postmaster", () => {
      if (owner.exitCode !== null) throw new Error(`owner exited early: ${stderr}`);
      return /POSTMASTER \d+\n/.test(stdout);
    });
  } catch (error) {
    owner.kill("SIGKILL");
    throw error;
  }
  return { owner, postmaster: Number(/POSTMASTER (\d+)/.exec(stdout)?.[1]) };
}

describe("startEmbeddedPostgres", () => {
  it("initialises a fresh dir, then restarts warm with its data", { timeout: TIMEOUT }, async () => {
    const dataDir = path.join(root, "nested", "warm");
    let t = performance.now();
    const cold = await startEmbeddedPostgres({ dataDir });
    const coldMs = performance.now() - t;
    expect(cold.dataDir).toBe(dataDir);
    expect(cold.url).toBe(`postgres://postgres@127.0.0.1:${cold.port}/postgres`);
    const [row] = await query<{ version: string }>(cold.url, "select version()");
    expect(row?.version).toMatch(/^PostgreSQL 18\./);
    await query(cold.url, "create table kept (v text); insert into kept values ('hello')");
    await Promise.all([cold.stop(), cold.stop()]);
    await cold.stop(); // idempotent
    expect(existsSync(path.join(dataDir, "postmaster.pid"))).toBe(false);

    const logs: string[] = [];
    t = performance.now();
    const warm = await startEmbeddedPostgres({ dataDir, onLog: (line) => logs.push(line) });
    const warmMs = performance.now() - t;
    try {
      expect(logs.some((line) => line.includes("ready to accept connections"))).toBe(true);
      expect(logs.some((line) => /initdb|creating subdirectories/.test(line))).toBe(false);
      expect(await query<{ v: string }>(warm.url, "select v from kept")).toEqual([{ v: "hello" }]);
    } finally {
      await warm.stop();
    }
    console.log(`embedded postgres: cold start ${coldMs.toFixed(0)} ms, warm start ${warmMs.toFixed(0)} ms`);
  });

  it("resolves a relative dataDir against the cwd", { timeout: TIMEOUT }, async () => {
    const relative = path.relative(process.cwd(), path.join(root, "relative"));
    const pg = await startEmbeddedPostgres({ dataDir: relative });
    try {
      expect(pg.dataDir).toBe(path.join(root, "relative"));
    } finally {
      await pg.stop();
    }
  });

  it("shuts down a postmaster orphaned by a SIGKILLed parent", { timeout: TIMEOUT }, async () => {
    const dataDir = path.join(root, "orphan");
    const { owner, postmaster: orphan } = await startOwner(dataDir);
    const exited = new Promise((resolve) => owner.on("exit", resolve));
    owner.kill("SIGKILL");
    await exited;
    expect(isAlive(orphan)).toBe(true); // the SIGKILLed owner could not stop it

    const pg = await startEmbeddedPostgres({ dataDir });
    try {
      expect(isAlive(orphan)).toBe(false);
      expect(await postmasterPid(dataDir)).not.toBe(orphan);
      await query(pg.url, "select 1");
    } finally {
      await pg.stop();
    }
  });

  it("starts over a stale postmaster.pid whose postmaster is dead", { timeout: TIMEOUT }, async () => {
    const dataDir = path.join(root, "stale");
    const first = await startEmbeddedPostgres({ dataDir });
    await query(first.url, "create table kept (v int); insert into kept values (1)");
    const pid = await postmasterPid(dataDir);
    const children = await childrenOf(pid);
    process.kill(pid, "SIGKILL");
    // Its children notice the death and exit; until then they hold shared memory.
    await waitFor("the postmaster and its children to exit", () => ![pid, ...children].some(isAlive));
    expect(existsSync(path.join(dataDir, "postmaster.pid"))).toBe(true);
    await first.stop(); // must not hang on an already-dead child

    const second = await startEmbeddedPostgres({ dataDir });
    try {
      expect(await query<{ v: number }>(second.url, "select v from kept")).toEqual([{ v: 1 }]);
    } finally {
      await second.stop();
    }
  });

  it("rejects with Postgres's reason when the server cannot start", { timeout: TIMEOUT }, async () => {
    const dataDir = path.join(root, "broken");
    await (await startEmbeddedPostgres({ dataDir })).stop();
    await appendFile(path.join(dataDir, "postgresql.conf"), "\nno_such_setting = 1\n");

    const error = await startEmbeddedPostgres({ dataDir }).then(
      () => expect.fail("start should have failed"),
      (error: unknown) => error,
    );
    expect(error).toBeInstanceOf(EmbeddedPostgresError);
    expect((error as Error).message).toContain('unrecognized configuration parameter "no_such_setting"');
  });
  it("shares the server of a live owner instead of stopping it", { timeout: TIMEOUT }, async () => {
    const dataDir = path.join(root, "shared");
    const { owner, postmaster } = await startOwner(dataDir);
    try {
      const pg = await startEmbeddedPostgres({ dataDir });
      expect(await postmasterPid(dataDir)).toBe(postmaster);
      await query(pg.url, "select 1");
      await pg.stop(); // not ours: left running for its owner
      expect(isAlive(postmaster)).toBe(true);
    } finally {
      owner.kill("SIGKILL");
      process.kill(postmaster, "SIGINT");
      await waitFor("the postmaster to stop", () => !isAlive(postmaster));
    }
  });

  it("leaves the program's exit code and signals alone", { timeout: TIMEOUT }, async () => {
    const dataDir = path.join(root, "exit-code");
    const script = path.join(root, "exit-code.mts");
    const engineUrl = pathToFileURL(path.resolve("src/index.ts")).href;
    await writeFile(
      script,
      `import { Engine } from ${JSON.stringify(engineUrl)};
const engine = await Engine.open({ dataDir: process.argv[2]!, schema: "exit_code" });
await engine.close();
process.exitCode = 3;
`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script, dataDir], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const [code] = (await once(child, "exit")) as [number | null];
    expect(stderr).toBe("");
    expect(code).toBe(3);
    expect(existsSync(path.join(dataDir, "postmaster.pid"))).toBe(false); // stopped by close()
  });
});
