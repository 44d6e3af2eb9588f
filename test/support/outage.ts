// A switchable door between an engine and Postgres, for outage tests: while it is down,
// every connection through it is cut and new ones fail, the way a client sees a Postgres
// that is stopped ("refuse": ECONNREFUSED, nothing listens) or one that drops every new
// connection ("reset": accepted and closed at once; each attempt is counted). Up again,
// on the same port, it forwards as before. The shared test database is never touched.
import net from "node:net";

export class OutageDoor {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  /** Connections forwarded so far. */
  connections = 0;
  /** Connections dropped at once while down in "reset" mode. */
  dropped = 0;
  private resetting = false;
  private waiters: { n: number; resolve: () => void }[] = [];

  private portNumber = 0;

  private constructor(private readonly target: { host: string; port: number }) {}

  /** A door to the Postgres of `url`, open. */
  static async open(url: string): Promise<OutageDoor> {
    const u = new URL(url);
    const door = new OutageDoor({ host: u.hostname, port: Number(u.port || 5432) });
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

  get isUp(): boolean {
    return this.server !== undefined && !this.resetting;
  }

  /** Cuts every connection; new ones fail until `up()`. */
  async down(mode: "refuse" | "reset" = "refuse"): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (mode === "reset") {
      this.resetting = true;
      if (!this.server) await this.listen(this.port);
      return;
    }
    this.resetting = false;
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async up(): Promise<void> {
    this.resetting = false;
    if (!this.server) await this.listen(this.port);
  }

  /** Resolves once `n` connection attempts in all have been dropped in "reset" mode. */
  droppedAtLeast(n: number): Promise<void> {
    if (this.dropped >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }

  async close(): Promise<void> {
    await this.down();
  }

  private listen(port: number): Promise<number> {
    const server = net.createServer((client) => this.accept(client));
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        this.server = server;
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  private accept(client: net.Socket): void {
    if (!this.server || this.resetting) {
      client.destroy();
      this.dropped++;
      this.waiters = this.waiters.filter((w) => (this.dropped >= w.n ? (w.resolve(), false) : true));
      return;
    }
    this.connections++;
    const upstream = net.connect(this.target.port, this.target.host);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
