// Shared pieces of the Node side of the interoperability tests: loading a graphile-worker
// release, a logger that reports only what the tests look at, and the task list.
//
// The tasks write what they saw into tables the Python tests create in the database's
// public schema (see tables.py), so every assertion is made in Python against the database.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/**
 * Load a graphile-worker release by its npm name ("graphile-worker", or an alias such as
 * "graphile-worker-0.13" for an older release). Older releases are CommonJS, newer ones
 * ES modules; both expose the same names.
 */
export async function loadGraphileWorker(packageName) {
  let loaded;
  try {
    loaded = await import(packageName);
  } catch (error) {
    if (error && error.code === "ERR_REQUIRE_ESM") throw error;
    loaded = require(packageName);
  }
  return loaded.run ? loaded : loaded.default;
}

/** The installed version of `packageName`, for the ready line. */
export function packageVersion(packageName) {
  // Read from disk: newer releases do not export their package.json.
  const manifest = new URL(`./node_modules/${packageName}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(manifest, "utf8")).version;
}

/**
 * A logger that prints warnings and errors (and, with GW_INTEROP_VERBOSE=1, everything) to
 * stderr as JSON lines, so the Python side can assert that Node complained about nothing.
 */
export function makeLogger(graphileWorker) {
  const verbose = process.env.GW_INTEROP_VERBOSE === "1";
  return new graphileWorker.Logger((scope) => (level, message) => {
    if (verbose || level === "error" || level === "warning") {
      process.stderr.write(`${JSON.stringify({ level, message, scope })}\n`);
    }
  });
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The queue name of the running job: a column before 0.14, a lookup from 0.14 on. */
async function queueNameOf(helpers) {
  const { job } = helpers;
  if ("queue_name" in job) return job.queue_name;
  if (job.job_queue_id == null) return null;
  return helpers.getQueueName();
}

/** Insert one row into interop_results describing the job as this Node worker sees it. */
async function record(helpers, outcome) {
  const { job } = helpers;
  await helpers.query(
    `insert into public.interop_results
       (side, outcome, job_id, task_identifier, queue_name, locked_by, job)
     values ('node', $1, $2, $3, $4, $5, $6::jsonb)`,
    [
      outcome,
      job.id,
      job.task_identifier,
      await queueNameOf(helpers),
      job.locked_by ?? null,
      JSON.stringify(job),
    ],
  );
}

const HOLD_LIMIT_MS = 120_000;

/**
 * The tasks every Node worker of the suite knows:
 *
 * - `record`: succeed, recording the job.
 * - `fail`: record the attempt, then throw `payload.message` (or a fixed message).
 * - `hold`: record that it started, then keep the job (and its lock) until the test inserts
 *   the job's id into interop_release; then succeed, or fail when that row says "fail".
 * - `batch`: a batch job: the payload is a list, and each item that is an object with a
 *   `fail` message fails (Node retries just those items); records the attempt.
 * - `fleet`: the mixed-fleet job: one row in interop_fleet with the database clock at start
 *   and end, so the test can check that no two jobs of one serial queue overlapped.
 */
export const tasks = {
  async record(_payload, helpers) {
    await record(helpers, "ran");
  },

  async fail(payload, helpers) {
    await record(helpers, "failed");
    const message =
      isPlainObject(payload) && typeof payload.message === "string"
        ? payload.message
        : "deliberate failure from Node";
    throw new Error(message);
  },

  async hold(_payload, helpers) {
    await record(helpers, "started");
    const deadline = Date.now() + HOLD_LIMIT_MS;
    for (;;) {
      if (helpers.abortSignal && helpers.abortSignal.aborted) {
        throw new Error("hold: worker is shutting down");
      }
      const { rows } = await helpers.query(
        "select outcome from public.interop_release where job_id = $1",
        [helpers.job.id],
      );
      if (rows.length > 0) {
        if (rows[0].outcome === "fail") {
          await record(helpers, "failed");
          throw new Error("hold: released with failure");
        }
        await record(helpers, "ran");
        return;
      }
      if (Date.now() > deadline) throw new Error("hold: never released");
      await sleep(20);
    }
  },

  async batch(payload, helpers) {
    await record(helpers, "ran");
    if (!Array.isArray(payload)) throw new Error("batch: the payload must be a list");
    return payload.map((item) => {
      if (!isPlainObject(item) || typeof item.fail !== "string") return Promise.resolve();
      const rejected = Promise.reject(new Error(item.fail));
      // Marks the rejection as handled so Node does not report it before the worker
      // collects the results; the worker still sees it rejected.
      rejected.catch(() => {});
      return rejected;
    });
  },

  async fleet(payload, helpers) {
    const queue = isPlainObject(payload) && payload.q != null ? payload.q : null;
    let startedAt = null;
    if (queue != null) {
      // As text: a JavaScript Date would drop the microseconds.
      const { rows } = await helpers.query("select clock_timestamp()::text as t");
      startedAt = rows[0].t;
      // Long enough that a second job of the same queue would visibly overlap.
      await sleep(1);
    }
    await helpers.query(
      `insert into public.interop_fleet (n, job_id, side, queue_name, started_at, finished_at)
       values ($1, $2, 'node', $3, coalesce($4::timestamptz, clock_timestamp()), clock_timestamp())`,
      [payload.n, helpers.job.id, queue, startedAt],
    );
  },
};
