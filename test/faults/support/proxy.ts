// A TCP proxy between an engine and Postgres that can make connections go silent without
// closing them: a half-open path, as after a NAT timeout or a cable pulled between two
// hops. A blackholed connection drops every byte in both directions while both sockets
// stay open; connections made afterwards are forwarded as usual. It can also hold new
// connections of one kind at the door (a slow reconnect) until released.
import net from "node:net";

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
  /** Connections held at the door so far. */
  held = 0;
  private onStalled: (() => void) | undefined;
  /** Bytes dropped by blackholed connections. */
  dropped = 0;

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

  async close(): Promise<void> {
    for (const c of this.connections) {
      c.client.destroy();
      c.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private forwardWaiting(c: Connection): void {
    if (!c.waiting || c.applicationName === undefined) return;
    const chunks = c.waiting;
    c.waiting = undefined;
    for (const chunk of chunks) c.upstream.write(chunk);
  }

  private accept(client: net.Socket, target: { host: string; port: number }): void {
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
      else upstream.write(chunk);
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
