// The test's side of a snippet run in a process of its own (`node --import tsx module`):
// what it printed, its control messages (child.ts), and its end, each awaited with a
// deadline. Only the process started here is ever killed, by its own handle.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { within } from "../support/async.js";
import { CONTROL } from "./child.js";

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** What the snippet printed on stdout, control lines left out. */
  stdout: string;
  stderr: string;
}

type Message = Record<string, unknown>;

export class SnippetProcess {
  readonly messages: Message[] = [];
  private stdout = "";
  private stderr = "";
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiters = new Set<{ test: (m: Message) => boolean; resolve: (m: Message) => void; reject: (e: Error) => void }>();
  private result: Finished | undefined;
  readonly exited: Promise<Finished>;

  constructor(readonly label: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }) {
    this.child = spawn(process.execPath, args, { cwd: options.cwd, env: options.env, stdio: ["pipe", "pipe", "pipe"] });
    this.child.stderr.setEncoding("utf8").on("data", (chunk: string) => (this.stderr += chunk));
    const lines = createInterface({ input: this.child.stdout });
    lines.on("line", (line) => {
      if (!line.startsWith(CONTROL)) {
        this.stdout += `${line}\n`;
        return;
      }
      const message = JSON.parse(line.slice(CONTROL.length)) as Message;
      this.messages.push(message);
      for (const waiter of this.waiters) {
        if (waiter.test(message)) {
          this.waiters.delete(waiter);
          waiter.resolve(message);
        }
      }
    });
    this.exited = Promise.all([once(this.child, "close"), once(lines, "close")]).then(([[code, signal]]) => {
      this.result = { code: code as number | null, signal: signal as NodeJS.Signals | null, stdout: this.stdout, stderr: this.stderr };
      for (const waiter of this.waiters) waiter.reject(this.failure("exited before announcing what the test waits for"));
      this.waiters.clear();
      return this.result;
    });
  }

  /** The first control message `test` accepts; rejects if the process ends first or at the deadline. */
  message(what: string, test: (m: Message) => boolean, ms = 20_000): Promise<Message> {
    const seen = this.messages.find(test);
    if (seen) return Promise.resolve(seen);
    if (this.result) return Promise.reject(this.failure(`exited before announcing ${what}`));
    const promise = new Promise<Message>((resolve, reject) => this.waiters.add({ test, resolve, reject }));
    return within(ms, `${this.label} to announce ${what} (stderr so far: ${JSON.stringify(this.stderr.slice(-2000))})`, promise);
  }

  /** Closes its stdin (the snippet's cue to stop) and waits for its end. */
  finish(ms = 20_000): Promise<Finished> {
    this.child.stdin.end();
    return within(ms, `${this.label} to exit (stderr so far: ${JSON.stringify(this.stderr.slice(-2000))})`, this.exited);
  }

  /** For cleanup after a failed test: kills this process if it still runs. */
  kill(): void {
    if (!this.result && this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }

  private failure(what: string): Error {
    const r = this.result;
    return new Error(`${this.label} ${what}: exit code ${r?.code}, signal ${r?.signal}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
  }
}
