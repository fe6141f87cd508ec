// Run a Node graphile-worker whose cron scheduler lives on a clock the test moves.
//
// Usage: node cron_worker.mjs '<json options>'
//   connection   connection string (required)
//   schema       graphile-worker schema (default "graphile_worker")
//   crontabFile  absolute path of the crontab file (required)
//   now          the simulated time to start at, as an ISO string (required)
//
// Then, on stdin, one JSON object per line: {"now": "<ISO time>"} moves the simulated
// clock (forwards or backwards); closing stdin stops the worker gracefully.
//
// Prints JSON lines on stdout: {"event": "ready"} once running; {"event": "clock", "now"}
// after each move (so the test knows the move arrived); "cron:started" once registration
// and backfill are done; "cron:backfill" and "cron:scheduled" with the minute and the
// identifiers offered; {"event": "stopped"} at the end.
//
// How the clock is replaced: a module hook (module.register) rewrites graphile-worker's
// dist/cron.js as it is loaded, adding one line at its top that binds the names `Date`,
// `setTimeout` and `clearTimeout` *inside that module only* to a simulated clock. An ES
// module's own top-level bindings shadow the globals, so cron.js reads and sleeps on the
// simulated clock while the rest of Node (pg, the job loop, the logger) keeps the real
// one. Simulated time runs at the real rate between moves; a timer created by cron.js
// fires when simulated time reaches its deadline, by running or by a move.
// The hook checks that the file it rewrites is the one it expects, so a release that
// moved its scheduler elsewhere fails loudly instead of silently running on real time.
import { EventEmitter } from "node:events";
import { register } from "node:module";

import { makeLogger } from "./harness.mjs";

const options = JSON.parse(process.argv[2] ?? "{}");
for (const required of ["connection", "crontabFile", "now"]) {
  if (!options[required]) {
    console.error(`cron_worker.mjs: the JSON options need \`${required}\``);
    process.exit(2);
  }
}

function say(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

// ----------------------------------------------------------------------- simulated clock

const RealDate = Date;
const realSetTimeout = setTimeout;
const realClearTimeout = clearTimeout;
// Simulated time runs at the real rate from the last time the test set it, so that short
// timers (cron.js sleeps 1 ms between minutes while catching up) fire on their own.
let anchorSimulated = RealDate.parse(options.now);
let anchorReal = RealDate.now();
if (Number.isNaN(anchorSimulated)) {
  console.error(`cron_worker.mjs: cannot read the start time ${options.now}`);
  process.exit(2);
}
const simulatedNow = () => anchorSimulated + (RealDate.now() - anchorReal);
const timers = new Set();

class SimulatedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(simulatedNow());
    else super(...args);
  }

  static now() {
    return simulatedNow();
  }
}

function arm(timer) {
  realClearTimeout(timer.handle);
  timer.handle = realSetTimeout(() => {
    if (timers.delete(timer)) timer.callback(...timer.args);
  }, Math.max(timer.deadline - simulatedNow(), 0));
}

function setClock(isoTime) {
  anchorSimulated = RealDate.parse(isoTime);
  anchorReal = RealDate.now();
  for (const timer of timers) arm(timer);
}

function simulatedSetTimeout(callback, delay = 0, ...args) {
  const timer = {
    deadline: simulatedNow() + Math.max(Number(delay) || 0, 0),
    callback,
    args,
    handle: undefined,
  };
  timers.add(timer);
  arm(timer);
  return timer;
}

function simulatedClearTimeout(timer) {
  if (timer && timers.delete(timer)) realClearTimeout(timer.handle);
}

globalThis.__gwSimulatedCronClock = {
  Date: SimulatedDate,
  setTimeout: simulatedSetTimeout,
  clearTimeout: simulatedClearTimeout,
};

const hook = `
export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (!url.endsWith("/node_modules/graphile-worker/dist/cron.js")) return result;
  const source = String(result.source);
  if (!source.includes("export const runCron")) {
    throw new Error("cron_worker.mjs: " + url + " does not define runCron; update the hook");
  }
  const prefix =
    "const { Date, setTimeout, clearTimeout } = globalThis.__gwSimulatedCronClock;\\n";
  return { ...result, source: prefix + source, shortCircuit: true };
}
`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);

// Loaded only now, so that cron.js goes through the hook.
const graphileWorker = await import("graphile-worker");

// ---------------------------------------------------------------------------- the worker

const events = new EventEmitter();
const identifiers = (list) => list.map((entry) => entry.identifier);
events.on("cron:started", ({ start }) => say({ event: "cron:started", start: start.toISOString() }));
events.on("cron:backfill", ({ itemsToBackfill, timestamp }) =>
  say({ event: "cron:backfill", timestamp, identifiers: identifiers(itemsToBackfill) }),
);
events.on("cron:scheduled", ({ timestamp, jobsAndIdentifiers }) =>
  say({
    event: "cron:scheduled",
    timestamp: new RealDate(timestamp).toISOString(),
    identifiers: identifiers(jobsAndIdentifiers),
  }),
);

try {
  const runner = await graphileWorker.run({
    connectionString: options.connection,
    schema: options.schema ?? "graphile_worker",
    concurrency: 1,
    // No task this worker knows is ever scheduled: the jobs stay for the test to count.
    taskList: { cron_fleet_unused: async () => {} },
    crontabFile: options.crontabFile,
    logger: makeLogger(graphileWorker),
    noHandleSignals: true,
    events,
  });
  let stopping = null;
  const stop = () => {
    stopping ??= runner.stop();
    return stopping;
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  let buffered = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (!line) continue;
      setClock(JSON.parse(line).now);
      say({ event: "clock", now: new RealDate(simulatedNow()).toISOString() });
    }
  });
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  say({ event: "ready" });
  await runner.promise;
  await stop();
  say({ event: "stopped" });
  process.exit(0);
} catch (error) {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
}
