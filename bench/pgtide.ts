// The pgtide under test. The runner compiles src/ with tsc (tsconfig.build.json, as
// `npm run build` does for the package) into a temporary directory and points
// PGTIDE_BENCH_DIST at it, so the numbers are those of the JavaScript users run. tsx,
// which runs the bench itself, wraps every function it compiles in a name-keeping helper
// (esbuild keepNames); on src/ that cost ~40% more CPU per reader in the fan-out
// scenario. Without the variable (a scenario run on its own, or `--src`) src/ is used.
import path from "node:path";
import { pathToFileURL } from "node:url";

const dist = process.env.PGTIDE_BENCH_DIST;

function load<T>(fromDist: string, fromSrc: string): Promise<T> {
  return import(dist ? pathToFileURL(path.join(dist, fromDist)).href : fromSrc) as Promise<T>;
}

export const pgtide = await load<typeof import("../src/index.js")>("index.js", "../src/index.js");
export const pageReads = await load<typeof import("../src/streams/pageReads.js")>("streams/pageReads.js", "../src/streams/pageReads.js");
export const writer = await load<typeof import("../src/streams/writer.js")>("streams/writer.js", "../src/streams/writer.js");
export const source = dist ? "compiled by tsc" : "src/ through tsx";
