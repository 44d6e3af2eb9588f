#!/usr/bin/env node
// The `pgtide` command. Filled in by the CLI (src/cli); reserved until then.
console.error("pgtide: the command-line interface is not built yet");
process.exit(2);
