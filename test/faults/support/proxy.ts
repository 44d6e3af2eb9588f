// A TCP proxy between an engine and Postgres that can make connections go silent without
// closing them: a half-open path, as after a NAT timeout or a cable pulled between two
// hops. A blackholed connection drops every byte in both directions while both sockets
// stay open; connections made afterwards are forwarded as usual. It can also hold new
// connections of one kind at the door (a slow reconnect) until released, or cut every
// connection and fail new ones (an outage: Postgres stopped, or a network partition).
import net from "node:net";

export type Outage = "refuse" | "reset" | "starting";

/** What Postgres answers a startup message with while it starts up: ErrorResponse FATAL 57P03. */
const STARTING_UP = (() => {
  const fields = Buffer.from("SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0", "utf8");
  const length = Buffer.alloc(4);
  length.writeInt32BE(fields.length + 4);
  return Buffer.concat([Buffer.from("E"), length, fields]);
})();

export interface ProxiedConnection {
  readonly id: number;
  /** application_name from the startup message, e.g. "pgtide:myschema:listener". */
  readonly applicationName: string | undefined;
  readonly blackholed: boolean;
}

interface Connection extends ProxiedConnection {
  applicationName: string | undefined;
  blackholed: boolean;
  client: net.Socket;
  upstream: net.Socket;
  /** Client bytes not yet forwarded: until the startup message is seen, or while held. */
  waiting: Buffer[] | undefined;
  /** Server bytes held back while the connection's responses are stalled. */
  stalled: Buffer[] | undefined;
}

export class PausableProxy {
  private readonly connections = new Set<Connection>();
  private nextId = 1;
  private hold: ((c: ProxiedConnection) => boolean) | undefined;
  private trap: ((c: ProxiedConnection, chunk: Buffer) => boolean) | undefined;
  /** Connections held at the door so far. */
  held = 0;
  private onStalled: (() => void) | undefined;
  /** Bytes dropped by blackholed connections. */
  dropped = 0;
  private outage: Outage | undefined;
  /** application_name of each connection turned away at the door during a "reset" or "starting" outage, in order. */
  readonly refused: string[] = [];
  private refusedWaiters: { done: () => boolean; resolve: () => void }[] = [];

  private constructor(private readonly server: net.Server, readonly port: number) {}

  static async start(target: { host: string; port: number }): Promise<PausableProxy> {
    let proxy!: PausableProxy;
    const server = net.createServer((client) => proxy.accept(client, target));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", resolve);
    });
    proxy = new PausableProxy(server, (server.address() as net.AddressInfo).port);
    return proxy;
  }

  /** `url` with its host and port replaced by the proxy's. */
  url(url: string): string {
    const u = new URL(url);
    u.hostname = "127.0.0.1";
    u.port = String(this.port);
    return u.toString();
  }

  /** Open connections, oldest first. */
  list(): ProxiedConnection[] {
    return [...this.connections];
  }

  /** Silences the open connections that match; returns how many. */
  blackhole(match: (c: ProxiedConnection) => boolean): number {
    let count = 0;
    for (const c of this.connections) {
      if (!c.blackholed && match(c)) {
        c.blackholed = true;
        count++;
      }
    }
    return count;
  }

  /** From the first client chunk `match` accepts, that connection is blackholed (the chunk too). */
  blackholeWhen(match: ((c: ProxiedConnection, chunk: Buffer) => boolean) | undefined): void {
    this.trap = match;
  }

  /** New connections that match wait (their startup unanswered) until `release()`. */
  holdNew(match: (c: ProxiedConnection) => boolean): void {
    this.hold = match;
  }

  release(): void {
    this.hold = undefined;
    for (const c of this.connections) this.forwardWaiting(c);
  }

  /**
   * Holds back what Postgres sends on the matching open connections (queries still reach
   * it and run); resolves once a response has been held back.
   */
  stallResponses(match: (c: ProxiedConnection) => boolean): Promise<void> {
    for (const c of this.connections) if (match(c)) c.stalled ??= [];
    return new Promise((resolve) => (this.onStalled = resolve));
  }

  /** Delivers the held-back responses and forwards normally again. */
  unstall(): void {
    for (const c of this.connections) {
      const chunks = c.stalled;
      c.stalled = undefined;
      for (const chunk of chunks ?? []) c.client.write(chunk);
    }
  }

  /**
   * An outage: every open connection is destroyed, and new ones fail until `heal()`.
   * "refuse" stops listening, so a connection attempt meets ECONNREFUSED (Postgres
   * stopped). "reset" accepts a new connection, reads its startup message (recorded in
   * `refused`) and hangs up (a proxy or load balancer with nothing behind it). "starting"
   * answers the startup message as a Postgres that is starting up does (FATAL 57P03).
   */
  async cut(mode: Outage = "reset"): Promise<void> {
    this.outage = mode;
    for (const c of this.connections) {
      c.client.destroy();
      c.upstream.destroy();
    }
    if (mode === "refuse" && this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Ends the outage: new connections are forwarded again, on the same port. */
  async heal(): Promise<void> {
    this.outage = undefined;
    if (this.server.listening) return;
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.port, "127.0.0.1", () => {
        this.server.off("error", reject);
        resolve();
      });
    });
  }

  /** Resolves once `count` connections that match have been turned away during "reset" or "starting" outages. */
  refusedAtLeast(count: number, match: (applicationName: string) => boolean = () => true): Promise<void> {
    const done = () => this.refused.filter(match).length >= count;
    if (done()) return Promise.resolve();
    return new Promise((resolve) => this.refusedWaiters.push({ done, resolve }));
  }

  async close(): Promise<void> {
    for (const c of this.connections) {
      c.client.destroy();
      c.upstream.destroy();
    }
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private refuse(client: net.Socket, mode: Outage): void {
    let bytes = Buffer.alloc(0);
    client.on("error", () => {});
    client.on("data", (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      const name = startupApplicationName(bytes);
      if (name === undefined) return;
      if (mode === "starting") client.end(STARTING_UP);
      else client.destroy();
      this.refused.push(name);
      this.refusedWaiters = this.refusedWaiters.filter((w) => {
        if (!w.done()) return true;
        w.resolve();
        return false;
      });
    });
  }

  private forwardWaiting(c: Connection): void {
    if (!c.waiting || c.applicationName === undefined) return;
    const chunks = c.waiting;
    c.waiting = undefined;
    for (const chunk of chunks) c.upstream.write(chunk);
  }

  private accept(client: net.Socket, target: { host: string; port: number }): void {
    if (this.outage) return this.refuse(client, this.outage);
    const upstream = net.connect(target.port, target.host);
    const c: Connection = {
      id: this.nextId++, applicationName: undefined, blackholed: false, client, upstream, waiting: [], stalled: undefined,
    };
    this.connections.add(c);
    const end = () => {
      this.connections.delete(c);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.on("data", (chunk: Buffer) => {
      if (c.waiting) {
        c.waiting.push(chunk);
        if (c.applicationName === undefined) {
          const name = startupApplicationName(Buffer.concat(c.waiting));
          if (name === undefined) return; // the startup message is not complete yet
          c.applicationName = name;
          if (this.hold?.(c)) this.held++;
        }
        if (!this.hold?.(c)) this.forwardWaiting(c);
      } else if (c.blackholed) this.dropped += chunk.length;
      else if (this.trap?.(c, chunk)) {
        c.blackholed = true;
        this.dropped += chunk.length;
      } else upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (c.blackholed) this.dropped += chunk.length;
      else if (c.stalled) {
        c.stalled.push(chunk);
        this.onStalled?.();
      } else client.write(chunk);
    });
  }
}

/**
 * application_name from a complete StartupMessage (int32 length, int32 protocol, then
 * key\0value\0 pairs); "" if it has none, undefined while the message is incomplete.
 */
function startupApplicationName(bytes: Buffer): string | undefined {
  if (bytes.length < 8) return undefined;
  const length = bytes.readInt32BE(0);
  if (bytes.length < length) return undefined;
  const fields = bytes.toString("utf8", 8, length - 1).split("\0");
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "application_name") return fields[i + 1]!;
  return "";
}
