// The web demo: one page where a prompt gets a streamed answer, token by token, beside
// a backend job's progress bars. Reload mid-answer, or open a second tab: the same
// stream, resumed by offset.
//
//   npm run demo:web                        embedded Postgres in .pgtide/pgdata
//   DATABASE_URL=postgres://… npm run demo:web
//   PORT=8080 npm run demo:web              (default 3000)
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import { streamResponse, toNodeHandler } from "../../src/http/index.js";
import { redactUrl } from "../../src/db/redact.js";
import { ConnectionError, Engine, EngineClosedError, WorkflowNotRegisteredError } from "../../src/index.js";
import { registerDemoWorkflows } from "./workflows.js";

export interface DemoServer {
  /** e.g. http://127.0.0.1:3000/ */
  url: string;
  port: number;
  close(): Promise<void>;
}

const STATIC: Record<string, [file: string, type: string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
};
const MAX_PROMPT = 500;

/** Serves the demo on `port` (0 picks a free one). The engine stays the caller's to close. */
export async function startDemoServer(options: { engine: Engine; port?: number; host?: string }): Promise<DemoServer> {
  const { engine, port = 3000, host = "127.0.0.1" } = options;
  const { answer, job } = registerDemoWorkflows(engine);

  const handler = async (request: Request): Promise<Response> => {
    const { pathname } = new URL(request.url);
    const file = STATIC[pathname];
    if (file && request.method === "GET") {
      const body = await readFile(new URL(file[0], import.meta.url));
      return new Response(body, { headers: { "content-type": file[1], "cache-control": "no-cache" } });
    }
    if (pathname === "/api/runs" && request.method === "POST") {
      const { prompt } = (await request.json().catch(() => ({}))) as { prompt?: unknown };
      if (typeof prompt !== "string" || prompt.trim() === "" || prompt.length > MAX_PROMPT) {
        return Response.json({ error: `prompt must be a non-empty string of at most ${MAX_PROMPT} characters` }, { status: 400 });
      }
      const run = randomBytes(6).toString("hex");
      try {
        await Promise.all([
          answer.start({ prompt }, { workflowId: `demo-${run}-answer` }),
          job.start(undefined, { workflowId: `demo-${run}-job` }),
        ]);
      } catch (error) {
        // Postgres unreachable (past retryTimeoutMs) or the server shutting down: try again later.
        if (error instanceof ConnectionError || error instanceof EngineClosedError) {
          return Response.json({ error: error.message }, { status: 503, headers: { "retry-after": "2" } });
        }
        throw error;
      }
      return Response.json({ run }, { status: 201 });
    }
    // GET /api/streams/<workflowId>/<key>: the SSE (or ?format=json) door.
    const match = /^\/api\/streams\/([^/]+)\/([^/]+)$/.exec(pathname);
    if (match && request.method === "GET") {
      let workflowId: string;
      let key: string;
      try {
        workflowId = decodeURIComponent(match[1]!);
        key = decodeURIComponent(match[2]!);
      } catch {
        return new Response("malformed percent-encoding in the path\n", { status: 400 });
      }
      return streamResponse(engine, {
        workflowId,
        key,
        request,
        // An explicit decision: this demo serves its own workflows' streams, and nothing else.
        authorize: ({ workflowId }) => workflowId.startsWith("demo-"),
      });
    }
    return new Response("not found\n", { status: 404 });
  };

  const server = http.createServer(toNodeHandler(handler));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${actual}/`,
    port: actual,
    close: () => {
      server.closeAllConnections(); // open event streams would otherwise hold close() forever
      return new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}

async function main(): Promise<void> {
  const engine = await Engine.open(); // DATABASE_URL if set, else the embedded Postgres
  const demo = await startDemoServer({ engine, port: Number(process.env.PORT ?? 3000) });
  // Resume answers and jobs that a previous run of the server left unfinished.
  await engine.launch().catch((error) => {
    if (!(error instanceof WorkflowNotRegisteredError)) throw error;
    console.warn(`pgtide: ${error.message}`); // another program's workflows, in the same schema
  });
  console.log(`pgtide web demo: ${demo.url}`);
  console.log(`  Postgres ${redactUrl(engine.databaseUrl)} (schema ${engine.schema}); follow a run from a terminal with`);
  console.log(`  npx pgtide progress demo-<run>-job progress --database-url ${redactUrl(engine.databaseUrl)}`);
  const stop = async () => {
    await demo.close();
    await engine.close();
  };
  process.once("SIGINT", () => void stop());
  process.once("SIGTERM", () => void stop());
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
