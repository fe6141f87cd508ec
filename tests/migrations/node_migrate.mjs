// Migrate one schema with Node graphile-worker's own migrator (its public runMigrations).
//
// Usage: node node_migrate.mjs <path to the graphile-worker package> <connection string> <schema>
// Exits 0 on success; on failure prints the error and exits 1. Logging is silenced so the
// only output is an error, if any.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [packageDir, connectionString, schema] = process.argv.slice(2);
if (!packageDir || !connectionString || !schema) {
  console.error("usage: node_migrate.mjs <package dir> <connection string> <schema>");
  process.exit(2);
}

const worker = await import(pathToFileURL(path.join(packageDir, "dist", "index.js")).href);
const silent = new worker.Logger(() => () => {});

try {
  await worker.runMigrations({ connectionString, schema, logger: silent });
} catch (error) {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
}
