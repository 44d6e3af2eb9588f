// Opens an engine for a command. First a plain connection checks that Postgres answers
// (within seconds, not the driver's 30 s) and that the schema exists: opening an engine
// migrates, and a reading command must not create an empty schema out of a typo.
import postgres from "postgres";
import { Engine } from "../engine.js";
import { assertSchemaName } from "../validate.js";
import { redactSecrets, redactUrl } from "../db/redact.js";
import { CliError, UsageError } from "./command.js";

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
  let timer: NodeJS.Timeout | undefined;
  try {
    // connect_timeout bounds one attempt; with several hosts all refusing, the driver
    // moves from one to the next for ever, so the check has a deadline of its own.
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${CONNECT_TIMEOUT_S} s`), { code: "CONNECT_TIMEOUT" })), CONNECT_TIMEOUT_S * 1000);
    });
    const [row] = await Promise.race([sql`select to_regnamespace(${schema}) is not null as exists`, deadline]);
    exists = row?.exists === true;
  } catch (error) {
    const code = (error as { code?: string }).code;
    const message = String((error as Error).message ?? error);
    throw new CliError(redactSecrets(`cannot reach Postgres at ${redactUrl(url)}: ${message}${code && !message.includes(code) ? ` (${code})` : ""}`, url));
  } finally {
    clearTimeout(timer);
    await sql.end({ timeout: 1 });
  }
  if (!exists) {
    throw new CliError(`schema "${schema}" does not exist in ${redactUrl(url)}: no engine has used it (is --schema right?)`);
  }
  return Engine.open({ databaseUrl: url, schema, poolSize: 1 });
}
