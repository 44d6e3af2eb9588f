// A browser's EventSource, as far as the docs' browser lines use it, for running those
// lines in the test against the real server: `new EventSource(relativeUrl)` (resolved
// against the page's origin), `onmessage`, `addEventListener(type, …)`, `close()`,
// `readyState`. The stream is read with fetch and parsed as the HTML standard's event
// stream interpretation says (fields, `id`, `event`, multi-line `data`, an event with no
// data line is not dispatched, comments ignored). One difference, on purpose: when the
// response ends without `close()`, a browser would reconnect after its retry delay with
// `Last-Event-ID`; this stand-in goes to CONNECTING, fires `error` and stops there
// (`outcome` "ended"), so a test sees that the page did not close the source itself.

export interface SourceEvent {
  type: string;
  data: string;
  lastEventId: string;
}

type Listener = (event: SourceEvent) => void;

export type Outcome = "closed" | "ended" | "refused" | "failed";

export class StandInEventSource {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSED = 2;

  readyState = StandInEventSource.CONNECTING;
  readonly url: string;
  onmessage: Listener | null = null;
  onopen: Listener | null = null;
  onerror: Listener | null = null;
  /** Every event dispatched, in order (message, close, open, error…). */
  readonly events: SourceEvent[] = [];
  /** Exceptions thrown by the page's listeners (a browser reports them; the test asserts none). */
  readonly listenerErrors: unknown[] = [];
  /** The type of the event being dispatched when the page called close(), if it did. */
  closedDuring: string | undefined;
  status: number | undefined;
  readonly finished: Promise<Outcome>;

  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly abort = new AbortController();
  private dispatching: string | undefined;

  constructor(url: string | URL, origin: string) {
    this.url = new URL(url, origin).href;
    this.finished = this.run();
  }

  addEventListener(type: string, listener: Listener): void {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)!.add(listener);
  }

  removeEventListener(type: string, listener: Listener): void {
    this.listeners.get(type)?.delete(listener);
  }

  close(): void {
    if (this.readyState === StandInEventSource.CLOSED) return;
    this.readyState = StandInEventSource.CLOSED;
    this.closedDuring = this.dispatching ?? "(outside any event)";
    this.abort.abort();
  }

  private async run(): Promise<Outcome> {
    let response: Response;
    try {
      response = await fetch(this.url, { headers: { accept: "text/event-stream", "cache-control": "no-cache" }, signal: this.abort.signal });
    } catch {
      if (this.readyState === StandInEventSource.CLOSED) return "closed";
      this.readyState = StandInEventSource.CONNECTING;
      this.fire({ type: "error", data: "", lastEventId: "" });
      return "failed";
    }
    this.status = response.status;
    if (response.status !== 200 || !(response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      // A browser fails the connection for good: CLOSED, then `error`.
      this.readyState = StandInEventSource.CLOSED;
      await response.body?.cancel();
      this.fire({ type: "error", data: "", lastEventId: "" });
      return "refused";
    }
    this.readyState = StandInEventSource.OPEN;
    this.fire({ type: "open", data: "", lastEventId: "" });
    let buffer = "";
    let data = "";
    let type = "";
    let lastEventId = "";
    const field = (line: string) => {
      if (line === "") {
        if (data === "") {
          type = "";
          return;
        }
        const event = { type: type || "message", data: data.endsWith("\n") ? data.slice(0, -1) : data, lastEventId };
        data = "";
        type = "";
        this.fire(event);
        return;
      }
      if (line.startsWith(":")) return; // a comment (heartbeat)
      const colon = line.indexOf(":");
      const name = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (name === "data") data += `${value}\n`;
      else if (name === "event") type = value;
      else if (name === "id" && !value.includes("\0")) lastEventId = value;
    };
    try {
      const text = response.body!.pipeThrough(new TextDecoderStream());
      for await (const chunk of text) {
        buffer += chunk;
        let end: RegExpExecArray | null;
        while ((end = /\r\n|\r(?!$)|\n/.exec(buffer))) {
          field(buffer.slice(0, end.index));
          buffer = buffer.slice(end.index + end[0].length);
          if (this.readyState === StandInEventSource.CLOSED) return "closed";
        }
      }
    } catch {
      if (this.readyState === StandInEventSource.CLOSED) return "closed";
      this.readyState = StandInEventSource.CONNECTING;
      this.fire({ type: "error", data: "", lastEventId: "" });
      return "failed";
    }
    if (this.readyState === StandInEventSource.CLOSED) return "closed";
    this.readyState = StandInEventSource.CONNECTING; // a browser would reconnect from here
    this.fire({ type: "error", data: "", lastEventId: "" });
    return "ended";
  }

  private fire(event: SourceEvent): void {
    this.events.push(event);
    const handler = event.type === "message" ? this.onmessage : event.type === "open" ? this.onopen : event.type === "error" ? this.onerror : null;
    this.dispatching = event.type;
    try {
      for (const listener of [...(handler ? [handler] : []), ...(this.listeners.get(event.type) ?? [])]) {
        try {
          listener.call(this, event);
        } catch (error) {
          this.listenerErrors.push(error);
        }
      }
    } finally {
      this.dispatching = undefined;
    }
  }
}

/** The `EventSource` global of a page served from `origin`; every source it makes is kept in `made`. */
export function eventSourceOf(origin: string, made: StandInEventSource[]): new (url: string | URL) => StandInEventSource {
  return class PageEventSource extends StandInEventSource {
    constructor(url: string | URL) {
      super(url, origin);
      made.push(this);
    }
  };
}
