// Counts the answers a Postgres connection owes, from the bytes of the frontend/backend
// protocol (v3) each way: every Sync and simple Query, and the startup, is answered by
// exactly one ReadyForQuery; a Flush by whatever the server has to say so far.
const SYNC = 0x53; // 'S'
const QUERY = 0x51; // 'Q'
const FLUSH = 0x48; // 'H'
const READY_FOR_QUERY = 0x5a; // 'Z'
/** The protocol version a startup message carries (a cancel request carries another code). */
const PROTOCOL_3 = 196608;

/**
 * Splits a byte stream into messages: a type byte and a length (counting itself), then
 * the body. The client's first message has no type byte; its first 4 body bytes say
 * what it is (a startup, a cancel request).
 */
class Framer {
  private readonly header = Buffer.alloc(8);
  private filled = 0;
  private skip = 0;

  constructor(private untyped: boolean) {}

  /** Calls `message` with each message's type (0 when untyped) and, untyped, its code. */
  feed(chunk: Uint8Array, message: (type: number, code: number) => void): void {
    const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let at = 0;
    while (at < data.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, data.length - at);
        this.skip -= n;
        at += n;
        continue;
      }
      const need = this.untyped ? 8 : 5;
      let head: Buffer;
      let from: number;
      if (this.filled === 0 && data.length - at >= need) {
        head = data; // the usual case: the whole header is in this chunk
        from = at;
      } else {
        const n = Math.min(need - this.filled, data.length - at);
        data.copy(this.header, this.filled, at, at + n);
        this.filled += n;
        at += n;
        if (this.filled < need) return;
        head = this.header;
        from = 0;
        at -= need; // balanced by the advance below
      }
      at += need;
      this.filled = 0;
      if (this.untyped) {
        message(0, head.readInt32BE(from + 4));
        this.skip = Math.max(0, head.readInt32BE(from) - 8);
        this.untyped = false;
      } else {
        message(head[from]!, 0);
        this.skip = Math.max(0, head.readInt32BE(from + 1) - 4);
      }
    }
  }
}

export class ProtocolCounter {
  private readyOwed = 0;
  private flushOwed = false;
  private readonly out = new Framer(true);
  private readonly in = new Framer(false);

  /** Whether the server owes this connection an answer. */
  get waiting(): boolean {
    return this.readyOwed > 0 || this.flushOwed;
  }

  sent(data: Uint8Array): void {
    this.out.feed(data, (type, code) => {
      if (type === SYNC || type === QUERY || (type === 0 && code === PROTOCOL_3)) this.readyOwed++;
      else if (type === FLUSH) this.flushOwed = true;
    });
  }

  received(data: Uint8Array): void {
    this.flushOwed = false;
    this.in.feed(data, (type) => {
      if (type === READY_FOR_QUERY) this.readyOwed = Math.max(0, this.readyOwed - 1);
    });
  }
}
