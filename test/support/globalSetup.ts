// One Postgres for the whole run: DATABASE_URL when set, else an embedded one started
// here. Test files isolate themselves in schemas of their own (see engines.ts).
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../src/db/embedded.js";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
  }
}

let embedded: EmbeddedPostgres | undefined;
let dir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  let url = process.env.DATABASE_URL;
  if (url) {
    await assertReachable(url);
  } else {
    dir = await mkdtemp(path.join(tmpdir(), "pgtide-test-"));
    await chmod(dir, 0o755); // the postgres user must reach the data dir
    embedded = await startEmbeddedPostgres({ dataDir: path.join(dir, "pgdata") });
    url = embedded.url;
  }
  // Child processes spawned by tests find it here too.
  process.env.PGTIDE_TEST_DATABASE_URL = url;
  project.provide("databaseUrl", url);
}

export async function teardown(): Promise<void> {
  await embedded?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}

async function assertReachable(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {} });
  try {
    await sql`select 1`;
  } catch (error) {
    throw new Error(
      `DATABASE_URL=${url} does not answer (${(error as Error).message}). ` +
        "Start it (docker compose up -d, or pg_ctlcluster 15 main start), or unset DATABASE_URL to test on the embedded Postgres.",
    );
  } finally {
    await sql.end();
  }
}
