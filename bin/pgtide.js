#!/usr/bin/env node
// The `pgtide` command: runs the build of src/cli/main.ts (`npm install` builds dist/).
try {
  await import("../dist/cli/main.js");
} catch (error) {
  if (error?.code === "ERR_MODULE_NOT_FOUND" && String(error.message).includes("dist/cli/main.js")) {
    console.error("pgtide: dist/ is not built; run `npm run build` (npm install does it) in the package");
    process.exit(2);
  }
  throw error;
}
