"""``graphile-worker run --processes N``: N worker processes under one small supervisor.

A Python process runs Python code on one core at a time, so a worker whose jobs are CPU-bound
needs processes, not a higher ``--jobs``. The supervisor starts N copies of the same ``run``
command (``python -m graphile_worker.cli run ...`` without ``--processes``) instead of
forking itself: a fresh interpreter inherits no threads, event loop or open connection, and
each child is exactly what a single ``graphile-worker run`` would be, with its own worker id.

The supervisor itself never touches the database and imports no driver or task module.
Before the workers it runs ``graphile-worker migrate`` once, so that a database that cannot
be reached, or whose schema is too new, is reported once rather than N times (the workers
still check the schema when they start; it is then up to date and the check is cheap). It
passes SIGINT and SIGTERM on to every child (as SIGTERM), hands back at once the jobs of a
child that died (``graphile-worker sweep --dead-pid``), starts a child that ended
unexpectedly again after a back-off, gives up when a child cannot start, and exits 0 only
when every child stopped cleanly.

Children run in their own process group, so a Ctrl-C in a terminal reaches the supervisor
alone and each child is asked to stop exactly once; on Linux each child also receives
SIGTERM if the supervisor itself dies (``PR_SET_PDEATHSIG``). Child output is not relayed:
children write straight to the supervisor's stdout and stderr, so nothing is buffered or
lost if the supervisor is killed. POSIX only: the loop waits on a signal wake-up pipe.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import IO, TYPE_CHECKING, TypeAlias

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from types import FrameType, TracebackType

    from typing_extensions import Self

__all__ = [
    "FIRST_RESTART_DELAY",
    "MAX_QUICK_EXITS",
    "MAX_RESTART_DELAY",
    "STARTUP_SECONDS",
    "Verdict",
    "command_line",
    "describe_status",
    "supervise",
    "verdict_after_exit",
]

logger = logging.getLogger("graphile_worker.supervisor")

STARTUP_SECONDS = 10.0
"""A child that ends sooner than this after it was started counts as one that failed to start."""

MAX_QUICK_EXITS = 5
"""Consecutive failed starts of one child after which the supervisor gives up."""

FIRST_RESTART_DELAY = 0.5
"""Seconds before a child that ran for a while is started again; doubled per failed start."""

MAX_RESTART_DELAY = 30.0
"""The longest wait before starting a child again."""

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_CLEAN_WHILE_STOPPING = frozenset({0, -signal.SIGTERM})
"""How a child may end after being asked to stop: on its own, or by the SIGTERM itself when
it arrived before the child had installed its handlers (while it was still importing)."""

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

_SWEEP_TIMEOUT = 60.0
"""Seconds the supervisor waits for ``sweep --dead-pid`` after a child died."""

_Handler: TypeAlias = "Callable[[int, FrameType | None], object] | int | signal.Handlers | None"


# ------------------------------------------------------------------------ the command line


def _long_name(option: click.Option) -> str:
    return next((name for name in option.opts if name.startswith("--")), option.opts[0])


def _option_words(option: click.Option, value: object) -> list[str]:
    if value is None:
        return []
    if option.count:
        assert isinstance(value, int)
        return [_long_name(option)] * value
    if option.is_bool_flag:
        if value:
            return [_long_name(option)]
        return option.secondary_opts[:1]
    if option.is_flag:  # one of several flags that store different values under one name
        return [_long_name(option)] if value == option.flag_value else []
    items = value if option.multiple else (value,)
    assert isinstance(items, (tuple, list))
    words: list[str] = []
    for item in items:
        if option.nargs == 1 and _long_name(option).startswith("--"):
            # --name=value, so a value starting with "-" is never read as an option.
            words.append(f"{_long_name(option)}={item}")
        else:
            parts = item if isinstance(item, (tuple, list)) else (item,)
            words += [_long_name(option), *(str(part) for part in parts)]
    return words


def command_line(
    ctx: click.Context,
    *,
    leave_out: Collection[str] = (),
    only: Collection[str] | None = None,
) -> list[str]:
    """Arguments that give ``ctx``'s command the parameter values its caller gave it.

    Only values that came from the command line (or a default map, or a prompt) are
    written out: defaults and environment variables reach the child by themselves, since it
    has the same environment. Built from click's parameter objects rather than copied from
    ``sys.argv``, so options added to ``run`` later are passed on without changes here,
    and it works however the command was invoked.
    """
    words: list[str] = []
    positional: list[str] = []
    inherited = (ParameterSource.DEFAULT, ParameterSource.ENVIRONMENT, None)
    for param in ctx.command.get_params(ctx):
        name = param.name
        if name is None or not param.expose_value or name in leave_out:
            continue
        if (only is not None and name not in only) or ctx.get_parameter_source(name) in inherited:
            continue
        value = ctx.params.get(name)
        if isinstance(param, click.Option):
            words += _option_words(param, value)
        elif value is not None:
            items = value if isinstance(value, (tuple, list)) else (value,)
            positional += [str(item) for item in items]
    return [*words, "--", *positional] if positional else words


def _check_round_trip(ctx: click.Context, words: Sequence[str], leave_out: str) -> None:
    """Refuse to start children whose command line would not mean what the user typed.

    Every built-in option round-trips; this guards options whose type turns text into
    something ``str()`` cannot turn back.
    """
    again = ctx.command.make_context(ctx.info_name, list(words), parent=ctx.parent)
    for name, value in ctx.params.items():
        if name != leave_out and again.params.get(name) != value:
            raise click.UsageError(
                f"cannot pass the value of {name!r} ({value!r}) on to the worker processes "
                f"(it would become {again.params.get(name)!r}); run without --processes",
                ctx=ctx,
            )


# ------------------------------------------------------------------------ restart decisions


def describe_status(status: int) -> str:
    """How a child ended, from ``Popen.returncode`` (negative for a signal)."""
    if status >= 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f"was killed by {name}"


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What to do about a child that ended unexpectedly.

    Attributes:
        delay: Seconds to wait before starting it again, or ``None`` to give up.
        quick_exits: The child's count of consecutive failed starts, this one included.
        reason: Why the supervisor gives up (empty when it does not).
    """

    delay: float | None
    quick_exits: int
    reason: str = ""


def verdict_after_exit(
    *, index: int, status: int, uptime: float, starts: int, quick_exits: int
) -> Verdict:
    """Restart a child that ended while no stop was asked for, or give up.

    A child of the first generation that exits with an error during start-up has met a
    problem that the same command meets again (a bad ``--tasks``, a broken import, a rejected
    option): the supervisor gives up at once instead of starting it in a loop. Otherwise
    it is started again after a back-off that doubles with each failed start, and the
    supervisor gives up after :data:`MAX_QUICK_EXITS` failed starts in a row. A child
    killed by a signal (``kill -9``, the OOM killer) is started again even if it was
    killed during its first start: that says nothing about the command.
    """
    what = describe_status(status)
    quick = uptime < STARTUP_SECONDS
    if quick and starts == 1 and status > 0:
        return Verdict(
            None,
            quick_exits + 1,
            f"worker process {index} could not start: it {what} after {uptime:.1f}s "
            f"(its own error is above)",
        )
    quick_exits = quick_exits + 1 if quick else 0
    if quick_exits >= MAX_QUICK_EXITS:
        return Verdict(
            None,
            quick_exits,
            f"worker process {index} ended {quick_exits} times in a row within "
            f"{STARTUP_SECONDS:.0f}s of starting (the last time it {what})",
        )
    return Verdict(min(MAX_RESTART_DELAY, FIRST_RESTART_DELAY * 2**quick_exits), quick_exits)


# ---------------------------------------------------------------------------------- signals


class _SignalInbox:
    """SIGINT, SIGTERM and SIGCHLD, queued for the supervisor's loop, which they wake.

    The handlers only record the signal; the wake-up pipe makes ``select()`` return even
    when the signal arrived just before the loop went to sleep.
    """

    def __init__(self) -> None:
        self._received: collections.deque[int] = collections.deque()
        self._read = self._write = -1
        self._previous_fd = -1
        self._previous: dict[int, _Handler] = {}

    def __enter__(self) -> Self:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in (*_STOP_SIGNALS, signal.SIGCHLD):
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read)
        os.close(self._write)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._received.append(signum)

    def take(self) -> list[int]:
        """Stop signals received since the last call, in order (SIGCHLD only wakes)."""
        taken: list[int] = []
        while self._received:
            signum = self._received.popleft()
            if signum != signal.SIGCHLD:
                taken.append(signum)
        return taken

    def wait(self, timeout: float | None) -> None:
        """Sleep until a signal arrives or ``timeout`` seconds pass."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        if ready:
            try:
                while os.read(self._read, 512):
                    pass
            except BlockingIOError:
                pass


# ------------------------------------------------------------------------------- children


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def _child_setup() -> Callable[[], None]:
    """What each child runs between fork and exec (the supervisor has no threads).

    Its own process group keeps a terminal's Ctrl-C from reaching it directly: it would
    otherwise count the supervisor's forwarded copy as a second signal and stop at once.
    On Linux it also asks for SIGTERM when the supervisor dies, so no worker outlives it.
    """
    parent = os.getpid()
    prctl = _load_prctl()

    def setup() -> None:
        os.setpgid(0, 0)
        asked = prctl is not None and prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) == 0
        if asked and os.getppid() != parent:  # the supervisor died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


@dataclasses.dataclass(slots=True)
class _Slot:
    """One of the N worker processes, across its restarts."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    quick_exits: int = 0
    restart_at: float | None = None

    @property
    def name(self) -> str:
        pid = f" (pid {self.process.pid})" if self.process is not None else ""
        return f"worker process {self.index}{pid}"


class _Supervisor:
    def __init__(
        self,
        *,
        worker_command: Sequence[str],
        migrate_command: Sequence[str],
        sweep_command: Sequence[str] | None = None,
        processes: int,
        once: bool,
    ) -> None:
        self._worker_command = list(worker_command)
        self._migrate_command = list(migrate_command)
        self._sweep_command = None if sweep_command is None else list(sweep_command)
        self._once = once
        self._slots = [_Slot(index) for index in range(1, processes + 1)]
        self._setup = _child_setup()
        self._inbox = _SignalInbox()
        self._stop_level = 0  # 1: asked to stop gracefully, 2: at once, 3: killed
        self._failures: list[str] = []

    def run(self) -> int:
        """Migrate, run the workers until they are done or stopped; the exit status."""
        with self._inbox:
            migrated = self._migrate()
            if migrated != 0:
                return migrated
            try:
                if self._stop_level == 0:
                    for slot in self._slots:
                        self._start(slot)
                    self._supervise()
            finally:
                # Only after a bug or a failed fork: never leave workers behind unasked.
                for slot in self._running():
                    assert slot.process is not None
                    slot.process.terminate()
        if self._failures:
            more = len(self._failures) - 1
            raise click.ClickException(
                self._failures[0]
                + (f"; {more} more worker process problem(s) above" if more else "")
            )
        return 0

    def _spawn(
        self, command: list[str], stdout: IO[bytes] | None = None
    ) -> subprocess.Popen[bytes]:
        # preexec_fn is unsafe only in a process with threads; the supervisor has none.
        setup = self._setup
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            preexec_fn=setup,  # noqa: PLW1509
        )

    def _migrate(self) -> int:
        """Run ``migrate`` once; its status, or 0 when a stop signal cut it short.

        Its report ("Schema ...: version 19 -> 20") is logged rather than printed, so the
        supervisor's stdout holds what a single ``run`` prints and nothing else.
        """
        with tempfile.TemporaryFile() as report:
            process = self._spawn(self._migrate_command, stdout=report)
            while (status := process.poll()) is None:
                for _ in self._inbox.take():
                    self._stop_level += 1
                    process.send_signal(signal.SIGKILL if self._stop_level >= 3 else signal.SIGTERM)
                self._inbox.wait(None)
            report.seek(0)
            for line in report.read().decode(errors="replace").splitlines():
                logger.info("%s", line)
        for _ in self._inbox.take():  # a signal during the last moments still means "stop"
            self._stop_level += 1
        if self._stop_level:
            logger.info("Stopped before any worker process was started")
            return 0
        return status

    def _start(self, slot: _Slot) -> None:
        slot.restart_at = None
        slot.process = self._spawn(self._worker_command)
        slot.started_at = time.monotonic()
        slot.starts += 1
        assert slot.process is not None
        logger.info(
            "%s worker process %d of %d (pid %d)",
            "Started" if slot.starts == 1 else "Restarted",
            slot.index,
            len(self._slots),
            slot.process.pid,
        )

    def _supervise(self) -> None:
        while True:
            for signum in self._inbox.take():
                self._on_signal(signum)
            now = time.monotonic()
            for slot in self._slots:
                if slot.process is not None and (status := slot.process.poll()) is not None:
                    self._on_exit(slot, status, now)
            for slot in self._slots:
                if self._stop_level == 0 and slot.restart_at is not None and slot.restart_at <= now:
                    self._start(slot)
            waiting = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
            if not waiting and all(slot.process is None for slot in self._slots):
                break
            self._inbox.wait(max(0.0, min(waiting) - now) if waiting else None)
        if self._stop_level and not self._failures:
            logger.info("Every worker process has stopped")

    def _running(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.process is not None]

    def _stop(self) -> None:
        """Raise the stop level by one and pass the stop on to every running child.

        Always as SIGTERM, whichever signal the supervisor received: the worker treats
        SIGINT and SIGTERM alike, and a child still importing when it arrives ends quietly
        on SIGTERM, where SIGINT would print a KeyboardInterrupt traceback.
        """
        self._stop_level += 1
        for slot in self._slots:
            slot.restart_at = None
        for slot in self._running():
            assert slot.process is not None
            if self._stop_level >= 3:
                slot.process.kill()
            else:
                slot.process.send_signal(signal.SIGTERM)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        count = len(self._running())
        if self._stop_level == 0:
            logger.info(
                "Received %s; asking %d worker process(es) to stop gracefully (send it again "
                "to stop them at once)",
                name,
                count,
            )
        elif self._stop_level == 1:
            logger.warning(
                "Received %s again; asking the worker processes to stop at once (a third "
                "signal kills them)",
                name,
            )
        else:
            logger.warning(
                "Received %s a third time; killing %d worker process(es); jobs they were "
                "running stay locked until the stale-lock reset frees them",
                name,
                count,
            )
        self._stop()

    def _release_jobs_of(self, slot: _Slot, pid: int) -> None:
        """Hand back at once what a child that died still locks (``sweep --dead-pid``).

        Without this its jobs and named queues would wait for the other workers' sweeps to
        find its heartbeat stale (minutes). Run as a command, like ``migrate``, so that the
        supervisor itself never touches the database; its report goes to the log.
        """
        if self._sweep_command is None:
            return
        try:
            finished = subprocess.run(
                [*self._sweep_command, "--dead-pid", str(pid)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_SWEEP_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            logger.error(
                "Could not release the jobs of %s within %.0fs; the other workers' sweeps "
                "will, once its heartbeat is stale",
                slot.name,
                _SWEEP_TIMEOUT,
            )
            return
        output = (finished.stdout + finished.stderr).decode(errors="replace").strip()
        if finished.returncode != 0:
            logger.error("Could not release the jobs of %s: %s", slot.name, output)
        elif output:
            for line in output.splitlines():
                logger.info("%s", line)

    def _on_exit(self, slot: _Slot, status: int, now: float) -> None:
        name, what = slot.name, describe_status(status)
        pid = slot.process.pid if slot.process is not None else 0
        slot.process = None
        if status not in _CLEAN_WHILE_STOPPING:
            self._release_jobs_of(slot, pid)
        if self._stop_level:
            if status in _CLEAN_WHILE_STOPPING:
                logger.info("%s has stopped", name.capitalize())
            else:
                self._failures.append(f"{name} {what} while stopping")
                logger.error("%s %s while stopping", name.capitalize(), what)
            return
        if self._once:
            if status == 0:
                logger.info("%s has finished", name.capitalize())
            else:
                self._failures.append(f"{name} {what}")
                logger.error("%s %s", name.capitalize(), what)
            return
        verdict = verdict_after_exit(
            index=slot.index,
            status=status,
            uptime=now - slot.started_at,
            starts=slot.starts,
            quick_exits=slot.quick_exits,
        )
        slot.quick_exits = verdict.quick_exits
        if verdict.delay is None:
            self._failures.append(verdict.reason)
            logger.error(
                "%s; stopping the other worker processes",
                verdict.reason[0].upper() + verdict.reason[1:],
            )
            self._stop()
            return
        logger.warning(
            "%s %s after %.1fs; starting it again in %.1fs",
            name.capitalize(),
            what,
            now - slot.started_at,
            verdict.delay,
        )
        slot.restart_at = now + verdict.delay


# ------------------------------------------------------------------------------ entry point


def supervise(ctx: click.Context, processes: int, *, once: bool) -> None:
    """Run ``ctx``'s ``run`` command in ``processes`` child processes; return when all ended.

    With ``--once`` every child runs until no job is runnable, and none is restarted.

    Raises:
        click.UsageError: not a POSIX system, or an option that cannot be passed on.
        click.ClickException: a child could not start, kept failing, or did not stop
            cleanly (exit status 1).
        click.exceptions.Exit: ``migrate`` failed; its exit status, its error already shown.
    """
    if os.name != "posix":
        raise click.UsageError(
            "--processes needs a POSIX system (Linux, macOS, BSD); on Windows start one "
            "`graphile-worker run` per core under a service manager instead",
            ctx=ctx,
        )
    if threading.current_thread() is not threading.main_thread():
        raise click.UsageError("--processes must be used from the main thread", ctx=ctx)
    run_words = command_line(ctx, leave_out={"processes"})
    _check_round_trip(ctx, run_words, "processes")
    prefix = [sys.executable, "-m", "graphile_worker.cli"]
    if ctx.parent is not None:
        prefix += command_line(ctx.parent)
    supervisor = _Supervisor(
        worker_command=[*prefix, ctx.info_name or "run", *run_words],
        migrate_command=[
            *prefix,
            "migrate",
            *(["--check"] if ctx.params.get("no_migrate") else []),
            *command_line(ctx, only={"connection", "schema", "driver"}),
        ],
        sweep_command=None
        if ctx.params.get("no_recovery")
        else [*prefix, "sweep", *command_line(ctx, only={"connection", "schema", "driver"})],
        processes=processes,
        once=once,
    )
    status = supervisor.run()
    if status:
        ctx.exit(status)
