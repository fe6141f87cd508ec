// The Node graphile-worker side of the comparison: the same no-op task, run through the
// library API of the pinned npm release, with the settings the Python worker gets.
//
// Configuration arrives as JSON in $GRAPHILE_WORKER_BENCH_NODE:
//   packageDir       directory of the graphile-worker npm package (tests/node/node_modules/...)
//   connectionString PostgreSQL URL
//   concurrency      jobs run at once
//   localQueueSize   local queue size (-1 disables it)
//   completeJobBatchDelay, failJobBatchDelay   milliseconds (-1 disables batching)
//   records          directory that receives <pid>.json when the runner stops
//   latency          true: record each job's start time by id
//   markEvery        N > 0: record the time of every Nth start (the depth figure's slices)
//   sleepMs          milliseconds each job sleeps (0: a no-op job; the serial-mix figure)
//
// It prints "node runner ready" on stderr once run() has resolved, and stops gracefully on
// SIGTERM or SIGINT, then writes its records (count, first and last start, in seconds since
// the epoch like Python's time.time()) and exits 0.

import { writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const config = JSON.parse(process.env.GRAPHILE_WORKER_BENCH_NODE ?? "null");
if (!config) {
  console.error("node_worker.mjs: $GRAPHILE_WORKER_BENCH_NODE is not set");
  process.exit(2);
}

const entry = pathToFileURL(join(config.packageDir, "dist", "index.js")).href;
const { run, Logger } = await import(entry);

const nowSeconds = () => (performance.timeOrigin + performance.now()) / 1000;
let count = 0;
let firstStart = null;
let lastStart = null;
const starts = {};
const marks = [];
const markEvery = config.markEvery ?? 0;
const sleepMs = config.sleepMs ?? 0;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const taskList = {
  bench_noop: async (_payload, helpers) => {
    const now = nowSeconds();
    if (firstStart === null) firstStart = now;
    lastStart = now;
    count += 1;
    if (config.latency) starts[String(helpers.job.id)] = now;
    if (markEvery > 0 && count % markEvery === 0) marks.push([count, now]);
    if (sleepMs > 0) await sleep(sleepMs);
  },
};

const runner = await run({
  connectionString: config.connectionString,
  concurrency: config.concurrency,
  noHandleSignals: true,
  logger: new Logger(() => () => {}),
  taskList,
  preset: {
    worker: {
      localQueue: { size: config.localQueueSize },
      completeJobBatchDelay: config.completeJobBatchDelay,
      failJobBatchDelay: config.failJobBatchDelay,
    },
  },
});
process.stderr.write("node runner ready\n");

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await runner.stop();
  const target = join(config.records, `${process.pid}.json`);
  const record = {
    pid: process.pid,
    count,
    first_start: firstStart,
    last_start: lastStart,
    starts: config.latency ? starts : {},
    marks,
  };
  writeFileSync(`${target}.tmp`, JSON.stringify(record));
  renameSync(`${target}.tmp`, target);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
runner.promise.catch((error) => {
  console.error(`node runner failed: ${error?.stack ?? error}`);
  process.exit(1);
});
