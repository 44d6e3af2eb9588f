// A reader process for the fault suite, run as
//   node --import tsx test/faults/support/reader.ts '<json ReaderConfig>'
// It follows stream "out" of each workflow in `ids` from offset 0, checks every entry
// with the shared checker (value `${id}:${offset}`), reports milestones over IPC, and
// finally sends its counts and how often its own listener reconnected or erred.
import { Engine } from "../../../src/index.js";
import { follow, SequenceChecker, tally, type SequenceCounts } from "./sequence.js";

export interface ReaderConfig {
  url: string;
  schema: string;
  name: string;
  ids: string[];
  entries: number;
}

export type ReaderMessage =
  | { type: "ready" }
  | { type: "reached"; id: string; offset: number }
  | { type: "closed"; id: string }
  | { type: "done"; counts: SequenceCounts; reconnects: number; errors: string[] };

const send = (message: ReaderMessage) => process.send!(message);
const config = JSON.parse(process.argv[2]!) as ReaderConfig;
// The default heartbeat (5 s): a busy machine must not fake a reconnect, which the test counts.
const engine = await Engine.open({ databaseUrl: config.url, schema: config.schema, executorId: config.name });
const errors: string[] = [];
engine.on("error", (error) => errors.push(String((error as Error)?.message ?? error)));
let reconnects = 0;
engine.on("reconnected", () => reconnects++);

const half = Math.floor(config.entries / 2);
const checkers = config.ids.map((id) => new SequenceChecker(`${config.name} on ${id}`, 0, (i) => `${id}:${i}`, config.entries));
const following = config.ids.map((id, n) =>
  follow(checkers[n]!, engine.readStreamEntries(id, "out"), (offset) => {
    if (offset === half - 1 || offset === config.entries - 1) send({ type: "reached", id, offset: offset + 1 });
  }).then(() => send({ type: "closed", id })),
);
send({ type: "ready" });
await Promise.all(following);
send({ type: "done", counts: tally(checkers.map((c) => c.counts())), reconnects, errors });
await engine.close();
process.disconnect();
