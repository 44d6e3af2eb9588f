// The engine's registry of StreamFeeds: created when a stream gets its first local
// reader, dropped with its last. The listener's notifications are routed here.
import type { Sql } from "../db/connect.js";
import { StreamFeed } from "./feed.js";
import { PageReads } from "./pageReads.js";

export class StreamFeeds {
  private byWorkflow = new Map<string, Map<string, StreamFeed>>();
  private readonly pages: PageReads;

  constructor(sql: Sql, pageSize: number) {
    this.pages = new PageReads(sql, pageSize);
  }

  acquire(workflowId: string, key: string): StreamFeed {
    let keys = this.byWorkflow.get(workflowId);
    if (!keys) this.byWorkflow.set(workflowId, (keys = new Map()));
    let feed = keys.get(key);
    if (!feed) keys.set(key, (feed = new StreamFeed(this.pages, workflowId, key)));
    feed.readers++;
    return feed;
  }

  release(feed: StreamFeed): void {
    if (--feed.readers > 0) return;
    const keys = this.byWorkflow.get(feed.workflowId);
    if (keys?.get(feed.key) !== feed) return;
    keys.delete(feed.key);
    if (keys.size === 0) this.byWorkflow.delete(feed.workflowId);
  }

  /** How many readers are open, over all streams. */
  get readerCount(): number {
    let n = 0;
    for (const keys of this.byWorkflow.values()) for (const feed of keys.values()) n += feed.readers;
    return n;
  }

  notify(workflowId: string, key: string, offset: number, closed: boolean): void {
    this.byWorkflow.get(workflowId)?.get(key)?.notify(offset, closed);
  }

  /** The workflow finished: readers of its streams re-read (and find the close). */
  resetWorkflow(workflowId: string): void {
    for (const feed of this.byWorkflow.get(workflowId)?.values() ?? []) feed.reset();
  }

  /** The listener reconnected: notifications may have been missed, everyone re-reads. */
  resetAll(): void {
    for (const keys of this.byWorkflow.values()) for (const feed of keys.values()) feed.reset();
  }
}
