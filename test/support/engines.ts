// Engines for tests: each in a schema of its own, closed and dropped after the file.
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, afterEach, beforeEach, inject } from "vitest";
import { Engine, type EngineOptions } from "../../src/index.js";

export { collect, gate, rejectionOf, within } from "./async.js";

export const databaseUrl: string = inject("databaseUrl");

/** A direct connection for assertions (row counts, pg_stat_activity, killing backends). */
export const admin = postgres(databaseUrl, { max: 2, onnotice: () => {} });

const schemas = new Set<string>();
/** Engines opened outside a test (beforeAll): closed after the file. */
const engines = new Set<Engine>();
/** Engines opened inside the running test: closed when it ends, so a file of many tests
 * never holds dozens of connections at once. */
let testEngines: Engine[] | undefined;

beforeEach(() => {
  testEngines = [];
});

afterEach(async () => {
  const opened = testEngines ?? [];
  testEngines = undefined;
  await Promise.all(opened.map((engine) => engine.close()));
});

export function uniqueSchema(prefix = "t"): string {
  const name = `${prefix.toLowerCase().replace(/[^a-z0-9_]/g, "_").slice(0, 30)}_${randomBytes(4).toString("hex")}`;
  schemas.add(name);
  return name;
}

/** Opens an engine on the test database, in a fresh schema unless one is given; it is
 * closed when the test (or, from beforeAll, the file) ends. */
export async function openEngine(options: EngineOptions = {}): Promise<Engine> {
  const schema = options.schema ?? uniqueSchema("t");
  schemas.add(schema);
  const engine = await Engine.open({ databaseUrl, heartbeatMs: 1000, ...options, schema });
  if (testEngines) testEngines.push(engine);
  else engines.add(engine);
  return engine;
}

afterAll(async () => {
  await Promise.all([...engines].map((e) => e.close()));
  for (const schema of schemas) await admin.unsafe(`drop schema if exists "${schema}" cascade`);
  await admin.end();
});
