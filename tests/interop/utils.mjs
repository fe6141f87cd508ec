// Run a list of Node graphile-worker utility operations and print their results as JSON.
//
// Usage: node utils.mjs < request.json, where the request is
//   {"connection": "...", "schema": "...", "package": "graphile-worker", "ops": [...]}
// and each op is one of
//   {"op": "addJob", "identifier": "...", "payload": ..., "spec": {...TaskSpec}}
//   {"op": "quickAddJob", "identifier": "...", "payload": ..., "spec": {...}}
//   {"op": "addJobs", "specs": [{identifier, payload, queueName, ...}], "preserveRunAt": false}
//   {"op": "completeJobs", "ids": [...]}
//   {"op": "permanentlyFailJobs", "ids": [...], "reason": "..."}
//   {"op": "rescheduleJobs", "ids": [...], "options": {runAt, priority, attempts, maxAttempts}}
//   {"op": "forceUnlockWorkers", "workerIds": [...]}
//   {"op": "removeJob", "jobKey": "..."}      (the remove_job SQL function, as Node documents)
//   {"op": "migrate"}
//   {"op": "sql", "text": "...", "values": [...]}   ({schema} in text: the quoted schema)
// `runAt` values are ISO strings and become Dates. Prints {"results": [...]} on success; on
// failure prints the error and exits 1.
import { loadGraphileWorker, makeLogger } from "./harness.mjs";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

const request = JSON.parse(await readStdin());
const graphileWorker = await loadGraphileWorker(request.package ?? "graphile-worker");
const sharedOptions = {
  connectionString: request.connection,
  schema: request.schema ?? "graphile_worker",
  logger: makeLogger(graphileWorker),
};

function withDates(spec) {
  if (!spec) return spec;
  const copy = { ...spec };
  if (typeof copy.runAt === "string") copy.runAt = new Date(copy.runAt);
  return copy;
}

function escapeIdentifier(name) {
  return `"${name.replace(/"/g, '""')}"`;
}

const utils = await graphileWorker.makeWorkerUtils(sharedOptions);
const schemaSql = escapeIdentifier(sharedOptions.schema);

async function perform(op) {
  switch (op.op) {
    case "addJob":
      return utils.addJob(op.identifier, op.payload, withDates(op.spec));
    case "quickAddJob":
      return graphileWorker.quickAddJob(
        sharedOptions,
        op.identifier,
        op.payload,
        withDates(op.spec),
      );
    case "addJobs":
      return utils.addJobs(op.specs.map(withDates), op.preserveRunAt ?? false);
    case "completeJobs":
      return utils.completeJobs(op.ids);
    case "permanentlyFailJobs":
      return utils.permanentlyFailJobs(op.ids, op.reason);
    case "rescheduleJobs":
      return utils.rescheduleJobs(op.ids, withDates(op.options));
    case "forceUnlockWorkers":
      return utils.forceUnlockWorkers(op.workerIds);
    case "removeJob":
      return utils.withPgClient(async (client) => {
        const { rows } = await client.query(
          `select * from ${schemaSql}.remove_job($1::text) where id is not null`,
          [op.jobKey],
        );
        return rows[0] ?? null;
      });
    case "migrate":
      return utils.migrate();
    case "sql":
      return utils.withPgClient(async (client) => {
        const { rows } = await client.query(op.text.replaceAll("{schema}", schemaSql), op.values);
        return rows;
      });
    default:
      throw new Error(`utils.mjs: unknown op ${JSON.stringify(op.op)}`);
  }
}

let output = "";
let status = 0;
try {
  const results = [];
  for (const op of request.ops) results.push((await perform(op)) ?? null);
  output = JSON.stringify({ results });
} catch (error) {
  console.error(error && error.stack ? error.stack : String(error));
  status = 1;
} finally {
  await utils.release();
}
// Exit only once the output is flushed: a large reply to a pipe is written asynchronously.
process.stdout.write(output, () => process.exit(status));
