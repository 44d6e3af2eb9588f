// Worker processes for the kill property (vitest-free): `node --import tsx worker.ts`,
// typed IPC, and a pool that keeps one spare process warming up, since spawning one costs
// about half a second. Every process started here is SIGKILLed by its own pid when the
// pool closes, if it is still alive.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { FromWorker, ToWorker, WorkerConfig } from "./worker.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURE = fileURLToPath(new URL("./worker.ts", import.meta.url));

export class WorkerProcess {
  readonly process: ChildProcess;
  readonly messages: FromWorker[] = [];
  private readonly listeners = new Set<(m: FromWorker | undefined) => void>();
  private stderrTail = "";
  readonly exited: Promise<void>;

  constructor(config: WorkerConfig) {
    this.process = spawn(process.execPath, ["--import", "tsx", FIXTURE, JSON.stringify(config)], {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "pipe", "ipc"],
    });
    this.process.stderr!.on("data", (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-3000);
    });
    this.process.on("message", (m: FromWorker) => {
      this.messages.push(m);
      for (const l of [...this.listeners]) l(m);
    });
    this.exited = new Promise((resolve) => {
      this.process.on("exit", () => {
        for (const l of [...this.listeners]) l(undefined);
        resolve();
      });
    });
  }

  get pid(): number {
    return this.process.pid!;
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  get stderr(): string {
    return this.stderrTail;
  }

  send(message: ToWorker): void {
    this.process.send(message);
  }

  /** Calls `fn` on every message from now on; returns the unsubscribe. */
  on(fn: (m: FromWorker) => void): () => void {
    const l = (m: FromWorker | undefined) => m && fn(m);
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /**
   * The first message that matches, received from index `since` of `messages` on (default:
   * from now on); rejects at the deadline or if the process exits.
   */
  next<T extends FromWorker>(what: string, match: (m: FromWorker) => m is T, ms: number, since?: number): Promise<T>;
  next(what: string, match: (m: FromWorker) => boolean, ms: number, since?: number): Promise<FromWorker>;
  next(what: string, match: (m: FromWorker) => boolean, ms: number, since = this.messages.length): Promise<FromWorker> {
    const found = this.messages.slice(since).find(match);
    if (found) return Promise.resolve(found);
    let listener: (m: FromWorker | undefined) => void = () => {};
    let timer: NodeJS.Timeout | undefined;
    return new Promise<FromWorker>((resolve, reject) => {
      listener = (m) => {
        if (m && match(m)) resolve(m);
        else if (!m || !this.running) reject(new Error(`worker ${this.pid} exited while waiting for ${what}; stderr: ${this.stderrTail}`));
      };
      this.listeners.add(listener);
      if (!this.running) listener(undefined);
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for worker ${this.pid}: ${what}`)), ms);
    }).finally(() => {
      clearTimeout(timer);
      this.listeners.delete(listener);
    });
  }

  /** Sends a command and waits for its reply (or its failure, which rejects). */
  async request(message: ToWorker, reply: FromWorker["type"], ms = 30_000): Promise<void> {
    const answer = this.next(`"${reply}" after "${message.type}"`, (m) => m.type === reply || (m.type === "failed" && m.what === message.type), ms);
    this.send(message);
    const m = await answer;
    if (m.type === "failed") throw new Error(`worker ${this.pid}: ${m.what} failed: ${m.message}`);
  }

  async kill(): Promise<void> {
    if (this.running) this.process.kill("SIGKILL");
    await this.exited;
  }
}

export class WorkerPool {
  private readonly idle: WorkerProcess[] = [];
  private readonly all = new Set<WorkerProcess>();
  private warming: Promise<WorkerProcess> | undefined;
  spawned = 0;

  constructor(private readonly config: WorkerConfig) {}

  private spawn(): Promise<WorkerProcess> {
    const w = new WorkerProcess(this.config);
    this.all.add(w);
    this.spawned++;
    void w.exited.then(() => this.all.delete(w));
    return w.next("ready", (m) => m.type === "ready", 60_000).then(() => w);
  }

  /** Keeps one spare process starting in the background. */
  warm(): void {
    this.warming ??= this.spawn();
  }

  /** An idle process (the spare, or a fresh one), and the next spare starts warming. */
  async take(): Promise<WorkerProcess> {
    let w = this.idle.pop();
    if (!w || !w.running) {
      const spare = this.warming ?? this.spawn();
      this.warming = undefined;
      w = await spare;
    }
    this.warm();
    return w;
  }

  /** A process whose engine is closed goes back for the next case. */
  give(w: WorkerProcess): void {
    if (w.running) this.idle.push(w);
  }

  async close(): Promise<void> {
    const warming = this.warming;
    this.warming = undefined;
    if (warming) await warming.catch(() => undefined);
    await Promise.all([...this.all].map((w) => w.kill()));
  }
}
