import { defineConfig } from "drizzle-kit";

// Used by `npm run db:generate` only; the engine applies the migrations itself.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/schema.ts",
  out: "./drizzle",
});
