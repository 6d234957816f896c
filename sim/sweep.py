"""Many replays at once: symbol-days as tasks on Dask's distributed scheduler.

A sweep of 50 symbols over a month is 1,000 symbol-days. Each is a task: its
tape (the data itself, so a worker needs no keys and no download cache), the
bot's script (any fork, as text) and how to replay it go to a worker, which
starts its own simulated Alpaca and its own bot process, and sends back the
figures and the files (report, chart, log, journal) for this machine to
write. Nothing else is shared, so the results do not depend on where or in
what order the tasks ran.

Where they run (one code path, Dask's scheduler, whatever the size):
  --jobs N               a local cluster of N worker processes (default: the cores)
  --cluster tcp://H:8786 a scheduler already running, its workers on any
                         machines (docs/replay.md, "Sweeps"); each worker runs from a
                         clone of this repository at the same commit
A single replay without --cluster runs in this process (nothing to spread,
and its progress bar can show events).

Why processes of one thread: each replay drives its simulated Alpaca from
Python, so two in one process would share one interpreter lock.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import tick_taker as tt

WORKERS_S = 30          # for a --cluster scheduler's first worker to be there
SCRATCH = "TICK_TAKER_SCRATCH"   # a local worker's folder for its replays' files
MAX_JOBS = 1000         # local workers at most (--jobs)


def _code_digest() -> str:
    """The simulator's own code, as one digest: a worker from another commit
    would replay differently, so it refuses (replay_day checks)."""
    h = hashlib.sha1()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


CODE = _code_digest()


@dataclass(frozen=True)
class Day:
    """One tape to replay: a symbol-day (or the symbols of a day together, or
    a file), the data itself in `data`."""
    parts: tuple[str, ...]     # its folder under --out: () alone, else (day, symbol) ...
    source: str                # where the data came from, in words
    feed: str                  # the feed the bot is told it is on
    origin: str                # the tape file here (for messages; its suffix says if gzipped)
    data: bytes

    @property
    def name(self) -> str:
        return Path(self.origin).name

    def label(self) -> str:
        return " ".join(self.parts) or self.name


def on_a_worker() -> bool:
    """Whether this code runs as a task on a Dask worker (a process that
    replays symbol-day after symbol-day), not in the sweep's own process."""
    try:
        from distributed import get_worker
        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def cores() -> int:
    return os.cpu_count() or 1


def check_code(code: str) -> None:
    """On a worker: refuse a task from a client at another commit of sim/."""
    if code != CODE:
        raise tt.FatalError(f"this worker runs other simulator code ({CODE}) than the "
                            f"client ({code}): start the workers from a clone at the same "
                            "commit as the one running the sweep")


@contextlib.contextmanager
def client(jobs: int, cluster: Optional[str]) -> Iterator[Any]:
    """A Dask client: to the scheduler at `cluster`, or to a local cluster of
    `jobs` single-threaded worker processes, every port on 127.0.0.1 and
    chosen free (Dask's HTTP port too: two sweeps at once never collide).
    Local workers are forked from a server process that has imported Dask
    once (Dask's "forkserver" method), not each a fresh interpreter importing
    it again: a second of CPU less per worker, on a machine busy enough.
    Their replays work in one temporary folder (SCRATCH), removed when the
    sweep ends, Ctrl+C included: a worker stopped mid-task cleans nothing
    up itself (its bots die with it: sim/zygote.py)."""
    import dask
    from distributed import Client, LocalCluster
    if cluster:
        try:                              # within Dask's distributed.comm.timeouts.connect
            c = Client(cluster)
        except (OSError, TimeoutError) as exc:
            raise tt.FatalError(f"--cluster {cluster}: no Dask scheduler answered ({exc}); "
                                "start one (docs/replay.md, \"Sweeps\")") from None
        with c:
            try:
                c.wait_for_workers(1, timeout=WORKERS_S)
            except TimeoutError:
                raise tt.FatalError(f"--cluster {cluster}: no worker joined in {WORKERS_S} s; "
                                    f"start some with `python -m dask worker {cluster}` "
                                    "(docs/replay.md, \"Sweeps\")") from None
            yield c
        return
    with tempfile.TemporaryDirectory(prefix="tick-taker-sweep-",
                                     ignore_cleanup_errors=True) as scratch, \
            dask.config.set({"distributed.worker.multiprocessing-method": start_method()}), \
            LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
                         env={SCRATCH: scratch}) as local, \
            Client(local) as c:
        c.register_plugin(_leave_ctrl_c_to_the_client())
        yield c


def start_method() -> str:
    """How local workers start: forked from Dask's "forkserver", unless the
    temporary folder's path is too long for the server's socket (AF_UNIX
    allows 108 bytes): then each its own interpreter ("spawn")."""
    return "forkserver" if len(tempfile.gettempdir()) <= 60 else "spawn"


def _leave_ctrl_c_to_the_client() -> Any:
    """A worker plugin: a local worker's Ctrl+C (the terminal sends it to
    every process of the sweep) is the client's to handle: it stops the
    sweep and the cluster. The worker would only die of it mid-task, a
    traceback each. Its bots still get the Ctrl+C themselves and stop
    cleanly (a handler, unlike an ignored signal, is not inherited by the
    processes a worker starts). Defined here so that importing sim (a
    single replay) does not import Dask; it travels to the workers by value."""
    from distributed import WorkerPlugin

    class LeaveCtrlCToTheClient(WorkerPlugin):
        name = "tick-taker-ctrl-c"

        def setup(self, worker: Any) -> None:
            import signal
            signal.signal(signal.SIGINT, lambda *_: None)

    return LeaveCtrlCToTheClient()


class CtrlC:
    """Ctrl+C during a sweep, acted on between Dask's calls: the handler only
    notes it, and `check()` raises KeyboardInterrupt where the client is at
    rest, so the cluster then closes at once and cleanly (a KeyboardInterrupt
    raised inside one of the client's calls could leave it waiting on its
    own event loop for half a minute). While a day downloads (`at_once`),
    Ctrl+C interrupts at once, as usual."""

    def __init__(self) -> None:
        self.pressed = self.anywhere = self.installed = False
        self.previous: Any = None

    def __enter__(self) -> "CtrlC":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._pressed)
            self.installed = True
        return self

    def __exit__(self, *_: Any) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous if self.previous is not None
                          else signal.default_int_handler)

    def _pressed(self, *_: Any) -> None:
        self.pressed = True
        if self.anywhere:
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def at_once(self) -> Iterator[None]:
        self.check()
        self.anywhere = True
        try:
            yield
        finally:
            self.anywhere = False


def run(fn: Callable[[Day, Any], Any], days: Iterable[Day], runs: list[Any], total: int,
        jobs: int, cluster: Optional[str], progress: bool,
        keep: Callable[[Day, int, Any], Any]) -> list[list[Any]]:
    """fn(day, run) for every day and each of `runs` (one bot, or the two
    versions of a comparison). As each finishes, keep(day, k, its result)
    runs here (it writes the files; what it returns is kept): a list per
    day, in the days' order, of what keep returned, in the runs' order.
    `days` may be a generator that downloads as it goes: a day's tasks start
    as soon as it is there, and no day's data stays in memory once its runs
    are done. `total`: how many days, for the progress bar. The first error
    stops the sweep and is raised here, as the task raised it."""
    if cluster is None and total * len(runs) == 1:      # one replay: in this process
        return [[keep(day, k, fn(day, r)) for k, r in enumerate(runs)] for day in days]
    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker
    bar = _bar(total, progress)
    kept: list[list[Any]] = []
    heads: list[Day] = []                          # each day without its data
    live: dict[str, tuple[Any, int, int]] = {}     # task key -> future, day, run

    def collect(done: Iterable[Any]) -> None:
        """Each finished task: its files written (keep), the bar ticked."""
        for f in done:
            _, d, k = live.pop(f.key)
            if f.status == "error":                # the first error: the rest are moot
                for other, _, _ in live.values():
                    other.cancel()
            kept[d][k] = keep(heads[d], k, f.result())
            if bar is not None:
                bar.update(1 / len(runs))

    try:
        with CtrlC() as ctrl_c, client(min(jobs, max(1, total * len(runs))), cluster) as c:
            pending = as_completed()
            each = iter(days)
            for d in itertools.count():
                with ctrl_c.at_once():             # a download: Ctrl+C stops it at once
                    day = next(each, None)
                if day is None:
                    break
                ctrl_c.check()
                heads.append(replace(day, data=b""))
                kept.append([None] * len(runs))
                shared = c.scatter(day, hash=False)  # the tape travels once, for every run
                for k, r in enumerate(runs):
                    f = c.submit(fn, shared, r, pure=False, key=f"replay-{d}-{k}-{day.label()}")
                    live[f.key] = (f, d, k)
                    pending.add(f)
                del day, shared
                collect(pending.next_batch(block=False) if pending.has_ready() else ())
            while not pending.is_empty():
                ctrl_c.check()
                if pending.has_ready():
                    collect(pending.next_batch(block=False))
                else:
                    time.sleep(0.05)
        return kept
    except KilledWorker as exc:
        raise tt.FatalError(f"a worker died replaying {exc.task} (out of memory?); "
                            "its log says why") from None
    except FutureCancelledError:
        raise tt.FatalError("the cluster cancelled the sweep (its scheduler stopped?)") from None
    finally:
        if bar is not None:
            bar.close()


def pace(n: int, seconds: float, args: Any, runs: int = 1) -> str:
    """How fast a sweep of n symbol-days (`runs` tasks each) went, and where it
    ran (args: --jobs, --cluster)."""
    workers = min(args.jobs, n * runs)
    where = (f"on the cluster at {args.cluster}" if args.cluster else
             f"on {workers} local worker{'s' if workers > 1 else ''}")
    return (f"{n} symbol-days in {seconds:.1f} s, {60 * n / seconds:.1f} a minute, {where}")


def add_args(p: Any) -> None:
    """--jobs and --cluster (sim.replay's and sim.compare's)."""
    p.add_argument("--jobs", type=tt.in_range(int, 1, MAX_JOBS), default=cores(), metavar="N",
                   help=f"replay N symbol-days at once, each with its own simulated Alpaca "
                   f"and bot, on a local Dask cluster (default: the cores, {cores()})")
    p.add_argument("--cluster", metavar="tcp://HOST:8786",
                   help="send the symbol-days to this running Dask scheduler and its workers "
                   "instead (docs/replay.md, \"Sweeps\")")


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="symbol-day", desc="replaying", leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} symbol-days "
                           "[{elapsed}<{remaining}]")
