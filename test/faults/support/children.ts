// Child processes for the fault suite: `node --import tsx <fixture> <json config>`, with
// an IPC channel for typed messages. Every child started here is SIGKILLed after the
// test file if it is still alive (by its own pid, nothing broader).
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll } from "vitest";
import { deadline } from "./wait.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const alive = new Set<Child<unknown>>();

afterAll(async () => {
  await Promise.all([...alive].map((child) => child.kill()));
});

export class Child<M> {
  readonly process: ChildProcess;
  /** Every message received, in order. */
  readonly messages: M[] = [];
  private listeners = new Set<(message: M) => void>();
  private stderrTail = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly name: string, fixture: string, config: unknown) {
    this.process = spawn(process.execPath, ["--import", "tsx", fixture, JSON.stringify(config)], {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "pipe", "ipc"],
    });
    alive.add(this as Child<unknown>);
    this.process.stderr!.on("data", (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-4000);
    });
    this.process.on("message", (message) => {
      this.messages.push(message as M);
      for (const listener of this.listeners) listener(message as M);
    });
    this.exited = new Promise((resolve) => {
      this.process.on("exit", (code, signal) => {
        alive.delete(this as Child<unknown>);
        for (const listener of this.listeners) listener(undefined as M); // wake waiters to notice the exit
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.process.pid!;
  }

  get stderr(): string {
    return this.stderrTail;
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  send(message: unknown): void {
    this.process.send(message as object);
  }

  /** Calls `fn` on every message from now on. */
  on(fn: (message: M) => void): void {
    this.listeners.add((message) => {
      if (message !== undefined) fn(message);
    });
  }

  /**
   * The first message (received so far or later) that matches; rejects at the deadline,
   * or if the child exits first.
   */
  waitFor<T extends M>(what: string, match: (message: M) => message is T, ms: number): Promise<T>;
  waitFor(what: string, match: (message: M) => boolean, ms: number): Promise<M>;
  waitFor(what: string, match: (message: M) => boolean, ms: number): Promise<M> {
    const found = this.messages.find(match);
    if (found !== undefined) return Promise.resolve(found);
    let listener: (message: M) => void = () => {};
    const wait = new Promise<M>((resolve, reject) => {
      listener = (message) => {
        if (message !== undefined && match(message)) resolve(message);
        else if (!this.running) reject(new Error(`${this.name} exited while we waited for ${what}; stderr:\n${this.stderrTail}`));
      };
      this.listeners.add(listener);
      if (!this.running) listener(undefined as M);
    });
    return deadline(ms, `${this.name}: ${what}`, wait).finally(() => this.listeners.delete(listener));
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    if (this.running) this.process.kill("SIGKILL");
    await this.exited;
  }
}

/** Path of a fixture in test/faults/support. */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`./${name}`, import.meta.url));
}
