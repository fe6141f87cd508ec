"""Benchmarks for graphile-worker for Python: ``nox -s bench`` or ``python -m tests.benchmarks``.

They print figures (throughput, latency, enqueue rate, start-up, memory; the drain at
depth on a dirty table with its CPU cost per job, steady-state latency, a serial-queue mix)
and never assert performance; they fail only when something is broken (a worker crashed, a job was lost or
ran twice). pytest does not collect this package. See BENCHMARKS.md at the top of the
repository for what each figure means and the latest results.

This module must stay free of imports: the worker subprocesses import
``tests.benchmarks.worker_tasks``, which imports this package first.
"""
