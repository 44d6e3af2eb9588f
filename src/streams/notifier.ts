// The engine's one LISTEN connection. Notifications are hints that something changed;
// whoever hears one re-reads the table. So what matters here is knowing when we might
// have missed some: after every (re)connect `onListen` runs, and readers re-query.
//
// We own the reconnect loop rather than use postgres.js's `sql.listen`, which gives up
// for good if its re-LISTEN fails while Postgres is down. A heartbeat also asks
// Postgres whether we are still listening, which catches a half-open TCP path that
// never reports a close: the worst case to notice one is about 2 × heartbeatMs.
import { connect, CONNECT_TIMEOUT_MS, type Sql } from "../db/connect.js";

export interface NotifierOptions {
  url: string;
  schema: string;
  channel: string;
  heartbeatMs: number;
  /** Runs inside postgres.js's socket parser: it must only enqueue work. */
  onPayload: (payload: string) => void;
  /** LISTEN is confirmed; `reconnected` is false the first time only. */
  onListen: (reconnected: boolean) => void;
  onError: (error: unknown) => void;
}

export class Notifier {
  private conn: Sql | undefined;
  private listening = false;
  private closed = false;
  private everListened = false;
  private readyWaiters = new Set<() => void>();
  private heartbeat: NodeJS.Timeout | undefined;
  private reconnecting: Promise<void> | undefined;

  constructor(private readonly options: NotifierOptions) {}

  /** Connects and LISTENs; rejects if the first attempt fails. */
  async start(): Promise<void> {
    await this.connectOnce();
    this.heartbeat = setInterval(() => void this.checkAlive(), this.options.heartbeatMs);
    this.heartbeat.unref();
  }

  get isListening(): boolean {
    return this.listening;
  }

  /** Resolves once LISTEN is in effect (at once when it already is). */
  ready(signal?: AbortSignal): Promise<void> {
    if (this.listening) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => {
        signal?.removeEventListener("abort", abort);
        resolve();
      };
      const abort = () => {
        this.readyWaiters.delete(done);
        reject(signal!.reason);
      };
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener("abort", abort, { once: true });
      this.readyWaiters.add(done);
    });
  }

  /** The backend pid of the listener connection, for tests and diagnostics. */
  async backendPid(): Promise<number | undefined> {
    if (!this.conn || !this.listening) return undefined;
    const [row] = await this.conn`select pg_backend_pid() as pid`;
    return row?.pid as number | undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeat);
    const conn = this.conn;
    this.conn = undefined;
    this.listening = false;
    await conn?.end({ timeout: 1 });
  }

  private async connectOnce(): Promise<void> {
    const { url, schema, channel } = this.options;
    const conn: Sql = connect({
      url,
      schema,
      role: "listener",
      max: 1,
      onnotify: (ch, payload) => {
        if (ch !== channel) return;
        try {
          this.options.onPayload(payload);
        } catch (error) {
          this.options.onError(error);
        }
      },
      onclose: () => this.lost(conn),
    });
    // One listener connection: one made by an attempt that overlapped this one goes.
    const previous = this.conn;
    this.conn = conn;
    if (previous) void previous.end({ timeout: 0 });
    // A LISTEN that gets no answer (a path gone silent after the startup) fails the
    // attempt, so open() gives up and the reconnect loop goes on: waiting on it left
    // open() hanging and a reconnected engine deaf for good. The heartbeat's bound.
    const listenMs = Math.min(Math.max(2 * this.options.heartbeatMs, 1000), CONNECT_TIMEOUT_MS);
    let timer: NodeJS.Timeout | undefined;
    try {
      const listening = conn.unsafe(`listen "${channel.replace(/"/g, '""')}"`);
      listening.catch(() => {}); // given up on at the deadline: its failure is nobody's
      await Promise.race([
        listening,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(Object.assign(new Error(`no answer to LISTEN within ${listenMs} ms`), { code: "NO_ANSWER" })), listenMs);
        }),
      ]);
    } catch (error) {
      if (this.conn === conn) this.conn = undefined;
      void conn.end({ timeout: 0 });
      throw error;
    } finally {
      clearTimeout(timer);
    }
    if (this.closed) {
      // close() came while we connected: this connection must not outlive the engine.
      void conn.end({ timeout: 0 });
      return;
    }
    if (this.conn !== conn) {
      // Lost again between the LISTEN and here (a second kill): the reconnect loop must
      // go on. Returning quietly left it ended, and the engine deaf for good.
      void conn.end({ timeout: 0 });
      throw Object.assign(new Error("the listener connection closed as it started listening"), { code: "CONNECTION_CLOSED" });
    }
    this.listening = true;
    const reconnected = this.everListened;
    this.everListened = true;
    for (const waiter of this.readyWaiters) waiter();
    this.readyWaiters.clear();
    this.options.onListen(reconnected);
  }

  /** The connection is gone or suspect: drop it and reconnect until it works. */
  private lost(conn: Sql): void {
    if (this.closed || this.conn !== conn) return;
    this.conn = undefined;
    this.listening = false;
    void conn.end({ timeout: 0 });
    this.reconnecting ??= this.reconnect().finally(() => {
      this.reconnecting = undefined;
    });
  }

  private async reconnect(): Promise<void> {
    for (let delay = 20; !this.closed; delay = Math.min(delay * 2, 2000)) {
      try {
        await this.connectOnce();
        return;
      } catch (error) {
        if (this.closed) return; // the engine closed under the attempt: nothing to report
        this.options.onError(error);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  private async checkAlive(): Promise<void> {
    const conn = this.conn;
    if (!conn || !this.listening) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.options.heartbeatMs);
    });
    try {
      const check = conn`select count(*)::int as n from pg_listening_channels() c where c = ${this.options.channel}`;
      const result = await Promise.race([check, timeout]);
      if (result === "timeout" || result[0]?.n !== 1) this.lost(conn);
    } catch {
      this.lost(conn);
    } finally {
      clearTimeout(timer);
    }
  }
}
