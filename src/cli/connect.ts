// Opens an engine for a command. First a plain connection checks that Postgres answers
// (within seconds, not the driver's 30 s) and that the schema exists: opening an engine
// migrates, and a reading command must not create an empty schema out of a typo.
import postgres from "postgres";
import { Engine } from "../engine.js";
import { assertSchemaName } from "../validate.js";
import { CliError, UsageError, redact } from "./command.js";

const CONNECT_TIMEOUT_S = 5;

export async function openEngine(url: string, schema: string): Promise<Engine> {
  try {
    assertSchemaName(schema);
  } catch (error) {
    throw new UsageError(`--schema: ${(error as Error).message}`);
  }
  const sql = postgres(url, {
    max: 1,
    connect_timeout: CONNECT_TIMEOUT_S,
    onnotice: () => {},
    connection: { application_name: "pgtide-cli" },
  });
  let exists: boolean;
  try {
    const [row] = await sql`select to_regnamespace(${schema}) is not null as exists`;
    exists = row?.exists === true;
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new CliError(`cannot reach Postgres at ${redact(url)}: ${(error as Error).message}${code && !(error as Error).message.includes(code) ? ` (${code})` : ""}`);
  } finally {
    await sql.end({ timeout: 1 });
  }
  if (!exists) {
    throw new CliError(`schema "${schema}" does not exist in ${redact(url)}: no engine has used it (is --schema right?)`);
  }
  return Engine.open({ databaseUrl: url, schema, poolSize: 1 });
}
