// Applies the drizzle-kit migrations in drizzle/ to the engine's schema. Drizzle's
// migrator has no lock of its own, so we hold a session advisory lock on the very
// connection it migrates with: processes opening at once apply each migration once.
import { fileURLToPath } from "node:url";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import { connect } from "./connect.js";

const MIGRATIONS = fileURLToPath(new URL("../../drizzle", import.meta.url));

/**
 * `signal` ends the attempt: its connection is destroyed, so the call rejects even when
 * postgres.js would wait without end (a URL with several hosts that all refuse: it
 * cycles through them forever and never fails the query).
 */
export async function migrateSchema(url: string, schema: string, signal?: AbortSignal): Promise<void> {
  const sql = connect({ url, schema, role: "migrator", max: 1 });
  const stop = () => void sql.end({ timeout: 0 });
  signal?.addEventListener("abort", stop, { once: true });
  try {
    await sql`select pg_advisory_lock(hashtext('pgtide.migrate'), hashtext(${schema}))`;
    // The migrator creates the schema first (migrationsSchema), then the tables land in
    // it through search_path.
    await migrate(drizzle(sql), { migrationsFolder: MIGRATIONS, migrationsSchema: schema });
  } finally {
    signal?.removeEventListener("abort", stop);
    await sql.end({ timeout: 5 });
  }
}
