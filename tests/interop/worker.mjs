// Run a Node graphile-worker with the suite's tasks (see harness.mjs).
//
// Usage: node worker.mjs '<json options>'
//   connection     connection string (required)
//   schema         graphile-worker schema (default "graphile_worker")
//   package        npm name of the release to run (default "graphile-worker")
//   concurrency    concurrent jobs (default 1)
//   once           true: run every job that is runnable now, then exit (runOnce)
//   pollInterval   milliseconds (default: the release's default)
//   forbiddenFlags list of flags this worker must not run
//   maxPoolSize    pg pool size (default: the release's default)
//
// Prints one JSON line to stdout when the worker is running ({"event": "ready", ...}) and
// one when it has stopped ({"event": "stopped"}). A continuous worker stops gracefully when
// its stdin closes or it receives SIGTERM/SIGINT, so a test that dies leaves no orphan.
import { loadGraphileWorker, makeLogger, packageVersion, tasks } from "./harness.mjs";

const options = JSON.parse(process.argv[2] ?? "{}");
if (!options.connection) {
  console.error("worker.mjs: the JSON options need a `connection`");
  process.exit(2);
}
const packageName = options.package ?? "graphile-worker";
const graphileWorker = await loadGraphileWorker(packageName);

const runOptions = {
  connectionString: options.connection,
  schema: options.schema ?? "graphile_worker",
  concurrency: options.concurrency ?? 1,
  taskList: tasks,
  logger: makeLogger(graphileWorker),
  noHandleSignals: true,
  // No crontab: the process runs in a scratch directory, and this makes sure of it.
  crontab: "",
};
if (options.pollInterval != null) runOptions.pollInterval = options.pollInterval;
if (options.forbiddenFlags != null) runOptions.forbiddenFlags = options.forbiddenFlags;
if (options.maxPoolSize != null) runOptions.maxPoolSize = options.maxPoolSize;

function say(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

try {
  if (options.once) {
    await graphileWorker.runOnce(runOptions);
    say({ event: "stopped" });
  } else {
    const runner = await graphileWorker.run(runOptions);
    let stopping = null;
    const stop = () => {
      stopping ??= runner.stop();
      return stopping;
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    process.stdin.on("end", stop);
    process.stdin.on("error", stop);
    process.stdin.resume();
    say({ event: "ready", version: packageVersion(packageName) });
    await runner.promise;
    await stop();
    say({ event: "stopped" });
  }
  process.exit(0);
} catch (error) {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
}
