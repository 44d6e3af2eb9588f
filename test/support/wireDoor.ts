// A door between an engine and Postgres that reads the wire protocol as it forwards it,
// for the outage matrix (test/outage.matrix.test.ts). Like OutageDoor it can go down
// ("refuse": nothing listens, ECONNREFUSED; "reset": a connection is accepted, its
// startup message read, and it is closed at once (FIN), counted by role; "rst": the same
// but closed with a TCP RST, so the client sees ECONNRESET) and up again on the same port. It also knows, per connection, the role (from application_name, e.g.
// "pgtide:s:pool" → "pool"), the backend pid (BackendKeyData), the statement whose
// result is flowing (Parse/Bind/Query, matched to ReadyForQuery by Sync), and how many
// rows of that result it has forwarded, so a test can stop a result at row k exactly:
//
//   const hit = door.trap({ role: "pool", sql: /from stream_entries/, afterRows: 500 });
//   … start the call …
//   const { pid } = await hit;             // row 500 reached the engine; the rest is held
//   await admin`select pg_terminate_backend(${pid})`;  // a real fault, on the real backend
//   await hit.release({ splice: true });
//
// What the engine then sees is what a termination at row k shows: k rows, Postgres's own
// FATAL 57P01, the close. With `splice`, a result the server had already completed before
// the fault (its remaining rows, CommandComplete, ReadyForQuery: still held here, never
// delivered) is dropped, so the FATAL lands mid-result however small the result is. With
// `pause` the door also stops reading from Postgres, so a large result backs up until the
// backend blocks in ClientWrite, still mid-result when the fault reaches it (no splice
// needed: nothing is dropped, the engine gets the rows up to where the backend died).
// The shared test database is never touched by the door itself.
import net from "node:net";

export type DoorMode = "refuse" | "reset" | "rst";

export interface TrapSpec {
  /** The connection's role: the last `:`-part of its application_name. */
  role: string;
  /** Matched against the statement whose rows are flowing. */
  sql: RegExp;
  /** Rows forwarded before the rest is held (at least 1). */
  afterRows: number;
  /** Stop reading from Postgres too (TCP backpressure), so the backend stays mid-result. */
  pause?: boolean;
  /** Matching results to let through whole before the one that is held. @default 0 */
  skipResults?: number;
}

export interface TrapHit {
  pid: number;
  applicationName: string;
  sql: string;
  /** The held bytes include the result's ReadyForQuery: the server finished it before the fault. */
  readonly serverFinished: boolean;
  /** Resolves when Postgres has closed the connection (read to its end only while not paused). */
  upstreamClosed: Promise<void>;
  /** Delivers what is held (see the header for `splice`) and forwards normally again. */
  release(options?: { splice?: boolean }): void;
}

export interface DoorStats {
  /** Connections forwarded. */
  connections: number;
  /** Connection attempts closed at the door while down in "reset" or "rst" mode, by role. */
  refused: Record<string, number>;
  /** Engine-side connections that ended after rows of a result and before its ReadyForQuery. */
  closedMidResult: number;
  /** ErrorResponses the engine received after rows of the same result, by SQLSTATE. */
  errorsMidResult: Record<string, number>;
}

interface Connection {
  client: net.Socket;
  upstream: net.Socket;
  applicationName: string | undefined;
  role: string | undefined;
  pid: number | undefined;
  // client → server
  fromClient: Buffer;
  startupSeen: boolean;
  statements: Map<string, string>;
  unnamed: string | undefined;
  sinceSync: string | undefined;
  /** One statement per Sync (or simple Query) not yet answered by ReadyForQuery. */
  inFlight: string[];
  // server → client
  fromServer: Buffer;
  /** Rows of the current result read from Postgres (held or not). */
  serverRows: number;
  /** Rows of the current result delivered to the engine. */
  clientRows: number;
  /** Whole messages held back, with their type. */
  held: { type: string; bytes: Buffer }[] | undefined;
  upstreamEnded: boolean;
  onUpstreamClosed: (() => void)[];
}

interface Armed extends TrapSpec {
  resolve: (hit: TrapHit) => void;
  /** Matching results seen whole so far. */
  skipped: number;
}

export class WireDoor {
  private server: net.Server | undefined;
  private mode: DoorMode | undefined;
  private readonly open = new Set<Connection>();
  private portNumber = 0;
  private armed: Armed | undefined;
  private waiters: { done: () => boolean; resolve: () => void }[] = [];
  /** Results delivered whole (ReadyForQuery reached the engine), by role, with their statement. */
  private readonly delivered: { role: string; sql: string }[] = [];
  readonly stats: DoorStats = { connections: 0, refused: {}, closedMidResult: 0, errorsMidResult: {} };

  private constructor(private readonly target: { host: string; port: number }) {}

  static async open(url: string): Promise<WireDoor> {
    const u = new URL(url);
    const door = new WireDoor({ host: u.hostname, port: Number(u.port || 5432) });
    door.portNumber = await door.listen(0);
    return door;
  }

  get port(): number {
    return this.portNumber;
  }

  /** `url` with its host and port replaced by the door's. */
  url(url: string): string {
    const u = new URL(url);
    u.hostname = "127.0.0.1";
    u.port = String(this.port);
    return u.toString();
  }

  /** Cuts every connection; new ones fail until `up()`. */
  async down(mode: DoorMode = "refuse"): Promise<void> {
    this.mode = mode;
    for (const c of this.open) this.destroy(c);
    this.open.clear();
    if (mode === "refuse" && this.server) {
      const server = this.server;
      this.server = undefined;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    } else if (mode !== "refuse" && !this.server) {
      await this.listen(this.port);
    }
  }

  async up(): Promise<void> {
    this.mode = undefined;
    if (!this.server) await this.listen(this.port);
  }

  /** Resolves once `n` attempts of `role` (any role if omitted) were closed at the door in "reset" or "rst" mode. */
  refusedAtLeast(n: number, role?: string): Promise<void> {
    const count = () => (role === undefined ? Object.values(this.stats.refused).reduce((a, b) => a + b, 0) : this.stats.refused[role] ?? 0);
    return this.until(() => count() >= n);
  }

  /** Resolves once `n` results of statements matching `sql` reached the engine's `role` connections whole. */
  deliveredAtLeast(n: number, role: string, sql: RegExp): Promise<void> {
    return this.until(() => this.deliveredCount(role, sql) >= n);
  }

  deliveredCount(role: string, sql: RegExp): number {
    return this.delivered.filter((d) => d.role === role && sql.test(d.sql)).length;
  }

  /** The backend pids of the open connections of `role`. */
  pids(role: string): number[] {
    return [...this.open].filter((c) => c.role === role && c.pid !== undefined).map((c) => c.pid!);
  }

  /** Holds the next result of a matching connection after `afterRows` rows (one shot). */
  trap(spec: TrapSpec): Promise<TrapHit> {
    if (this.armed) throw new Error("a trap is already armed");
    if (spec.afterRows < 1) throw new Error("afterRows must be at least 1");
    return new Promise((resolve) => (this.armed = { ...spec, resolve, skipped: 0 }));
  }

  disarm(): void {
    this.armed = undefined;
  }

  async close(): Promise<void> {
    this.armed = undefined;
    await this.down("refuse");
  }

  private until(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ done, resolve }));
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => (w.done() ? (w.resolve(), false) : true));
  }

  private listen(port: number): Promise<number> {
    const server = net.createServer((client) => this.accept(client));
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        this.server = server;
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  private accept(client: net.Socket): void {
    client.on("error", () => {});
    if (this.mode === "reset" || this.mode === "rst" || !this.server) return this.refuseAfterStartup(client, this.mode === "rst");
    this.stats.connections++;
    const upstream = net.connect(this.target.port, this.target.host);
    upstream.on("error", () => {});
    const c: Connection = {
      client, upstream, applicationName: undefined, role: undefined, pid: undefined,
      fromClient: Buffer.alloc(0), startupSeen: false, statements: new Map(), unnamed: undefined,
      sinceSync: undefined, inFlight: [],
      fromServer: Buffer.alloc(0), serverRows: 0, clientRows: 0, held: undefined, upstreamEnded: false, onUpstreamClosed: [],
    };
    this.open.add(c);
    client.on("data", (chunk: Buffer) => {
      this.readClient(c, chunk);
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => this.readServer(c, chunk));
    client.on("close", () => {
      this.open.delete(c);
      upstream.destroy();
    });
    upstream.on("close", () => {
      c.upstreamEnded = true;
      for (const f of c.onUpstreamClosed.splice(0)) f();
      // Held bytes wait for release(); then the engine sees the close.
      if (!c.held) this.endClient(c);
    });
  }

  private refuseAfterStartup(client: net.Socket, rst: boolean): void {
    let bytes = Buffer.alloc(0);
    const done = (name: string) => {
      if (rst) client.resetAndDestroy();
      else client.destroy();
      const role = roleOf(name);
      this.stats.refused[role] = (this.stats.refused[role] ?? 0) + 1;
      this.wake();
    };
    client.on("data", (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      const name = startupApplicationName(bytes);
      if (name !== undefined) done(name);
    });
  }

  private destroy(c: Connection): void {
    c.client.destroy();
    c.upstream.destroy();
  }

  /** The engine sees the close, after whatever partial message the backend left behind. */
  private endClient(c: Connection): void {
    if (c.fromServer.length > 0 && !c.client.destroyed) c.client.write(c.fromServer);
    c.fromServer = Buffer.alloc(0);
    if (c.clientRows > 0) this.stats.closedMidResult++;
    c.clientRows = 0;
    c.client.destroySoon();
  }

  /** Tracks which statement each Sync answers (client → server; forwarded unchanged). */
  private readClient(c: Connection, chunk: Buffer): void {
    c.fromClient = c.fromClient.length === 0 ? chunk : Buffer.concat([c.fromClient, chunk]);
    for (;;) {
      const buf = c.fromClient;
      if (!c.startupSeen) {
        if (buf.length < 4) return;
        const length = buf.readInt32BE(0);
        if (buf.length < length) return;
        const name = startupApplicationName(buf.subarray(0, length));
        c.applicationName = name;
        c.role = name === undefined ? undefined : roleOf(name);
        c.startupSeen = true;
        c.fromClient = buf.subarray(length);
        continue;
      }
      if (buf.length < 5) return;
      const length = buf.readInt32BE(1);
      if (buf.length < 1 + length) return;
      const type = String.fromCharCode(buf[0]!);
      const body = buf.subarray(5, 1 + length);
      c.fromClient = buf.subarray(1 + length);
      if (type === "P") {
        const [name, text] = cstrings(body, 2);
        if (name) c.statements.set(name, text!);
        else c.unnamed = text;
        c.sinceSync = text;
      } else if (type === "B") {
        const [, statement] = cstrings(body, 2);
        c.sinceSync = statement ? c.statements.get(statement) : c.unnamed;
      } else if (type === "S") {
        c.inFlight.push(c.sinceSync ?? "");
        c.sinceSync = undefined;
      } else if (type === "Q") {
        c.inFlight.push(cstrings(body, 1)[0]!);
      }
    }
  }

  /** Forwards whole messages from Postgres, counting rows, holding them when trapped. */
  private readServer(c: Connection, chunk: Buffer): void {
    c.fromServer = c.fromServer.length === 0 ? chunk : Buffer.concat([c.fromServer, chunk]);
    let start = 0; // first byte not yet forwarded or held
    let at = 0;
    const buf = c.fromServer;
    const flush = (end: number) => {
      if (end > start) c.client.write(buf.subarray(start, end));
      start = end;
    };
    while (buf.length - at >= 5) {
      const length = buf.readInt32BE(at + 1);
      if (buf.length - at < 1 + length) break;
      const type = String.fromCharCode(buf[at]!);
      const end = at + 1 + length;
      const body = buf.subarray(at + 5, end);
      if (c.held) {
        c.held.push({ type, bytes: Buffer.from(buf.subarray(at, end)) });
        if (type === "Z") c.serverRows = 0;
        start = end;
      } else {
        this.seen(c, type, body);
        if (type === "D") {
          c.serverRows++;
          c.clientRows++;
          const trap = this.armed;
          if (trap && c.role === trap.role && c.serverRows === trap.afterRows && trap.sql.test(c.inFlight[0] ?? "")) {
            if (trap.skipped++ < (trap.skipResults ?? 0)) {
              at = end;
              continue;
            }
            flush(end);
            this.armed = undefined;
            this.hold(c, trap);
          }
        }
      }
      at = end;
    }
    if (!c.held) flush(at);
    c.fromServer = buf.subarray(at);
  }

  /** What the engine is about to receive (not held): pid, errors, the end of a result. */
  private seen(c: Connection, type: string, body: Buffer): void {
    if (type === "K") c.pid = body.readInt32BE(0);
    else if (type === "E") {
      const code = errorField(body, "C") ?? "?";
      if (c.clientRows > 0) this.stats.errorsMidResult[code] = (this.stats.errorsMidResult[code] ?? 0) + 1;
    } else if (type === "Z") {
      c.serverRows = 0;
      c.clientRows = 0;
      const sql = c.inFlight.shift() ?? "";
      if (c.role !== undefined) {
        this.delivered.push({ role: c.role, sql });
        this.wake();
      }
    }
  }

  private hold(c: Connection, trap: Armed): void {
    c.held = [];
    if (trap.pause) c.upstream.pause();
    const door = this;
    /** Set when released: whether the held bytes had the result's ReadyForQuery. */
    let finishedWhenReleased: boolean | undefined;
    const finished = () => c.held?.some((m) => m.type === "Z") ?? false;
    trap.resolve({
      pid: c.pid ?? -1,
      applicationName: c.applicationName ?? "",
      sql: c.inFlight[0] ?? "",
      get serverFinished() {
        return finishedWhenReleased ?? finished();
      },
      upstreamClosed: c.upstreamEnded ? Promise.resolve() : new Promise<void>((resolve) => c.onUpstreamClosed.push(resolve)),
      release({ splice = false } = {}) {
        if (finishedWhenReleased !== undefined) return;
        finishedWhenReleased = finished();
        door.release(c, splice);
      },
    });
  }

  private release(c: Connection, splice: boolean): void {
    const held = c.held ?? [];
    c.held = undefined;
    let from = 0;
    if (splice) {
      const z = held.findIndex((m) => m.type === "Z");
      if (z >= 0) from = z + 1; // the completed result's tail: dropped
    }
    for (const m of held.slice(from)) {
      this.seen(c, m.type, m.bytes.subarray(5));
      if (m.type === "D") c.clientRows++;
      c.client.write(m.bytes);
    }
    if (c.upstreamEnded) this.endClient(c);
    else c.upstream.resume();
  }
}

/** "pgtide:schema:pool" → "pool"; anything else as it is. */
function roleOf(applicationName: string): string {
  const i = applicationName.lastIndexOf(":");
  return i >= 0 ? applicationName.slice(i + 1) : applicationName;
}

function cstrings(body: Buffer, n: number): string[] {
  const out: string[] = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    const end = body.indexOf(0, at);
    if (end < 0) break;
    out.push(body.toString("utf8", at, end));
    at = end + 1;
  }
  return out;
}

function errorField(body: Buffer, field: string): string | undefined {
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const type = String.fromCharCode(body[at]!);
    const end = body.indexOf(0, at + 1);
    if (end < 0) return undefined;
    if (type === field) return body.toString("utf8", at + 1, end);
    at = end + 1;
  }
  return undefined;
}

/** application_name of a complete StartupMessage ("" without one); undefined while incomplete. */
function startupApplicationName(bytes: Buffer): string | undefined {
  if (bytes.length < 8) return undefined;
  const length = bytes.readInt32BE(0);
  if (bytes.length < length) return undefined;
  const fields = bytes.toString("utf8", 8, length - 1).split("\0");
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "application_name") return fields[i + 1]!;
  return "";
}
