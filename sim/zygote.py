"""Bots started in a blink, for the test suite and a sweep's workers: the
real, unmodified script, run by a fork of a process that has already
imported its libraries.

Most of a bot's start is Python importing the SDK (and pandas, which the SDK
imports), aiohttp and websockets: about a second of CPU, paid by every one of
the suite's few hundred bot processes. The zygote pays it once: it imports
those libraries, then forks a child per bot. The child becomes what
`python SCRIPT ARGS...` would be (its own argv, environment, working folder,
standard streams on the bot's log file, stdin empty) and runs SCRIPT as
`__main__`, read from disk at that moment: a fork's copy of tick_taker.py
runs as itself. (The zygote compiles each path's source once, before the
fork: a bot's start is then mostly its own start-up.) Nothing of the script
is imported ahead of the child; only the libraries are shared.

    python -m sim.zygote        # serves requests on stdin (sim.bot.Bot uses it)

One request a line on stdin, JSON: {"script", "args", "env", "cwd", "log"};
the reply on stdout is "pid N". When a child ends: "exit N CODE" (CODE as
subprocess gives it: negative for a signal). End of stdin: the zygote kills
what is left of its children and exits.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import sys
from types import CodeType, ModuleType
from typing import Optional

# What tick_taker.py imports beyond the standard library (and the standard
# modules that cost the most): importing them here is the whole point.
PRELOAD = ("aiohttp", "websockets", "requests", "dotenv", "alpaca_trade_api.rest",
           "asyncio", "sqlite3", "zoneinfo", "fractions", "decimal", "uuid", "argparse",
           "logging", "dataclasses", "ipaddress")


def preload() -> None:
    import gc
    import importlib
    for name in PRELOAD:
        importlib.import_module(name)
    # What the imports made, out of the collector's way: no child's collection
    # walks it (or copies its pages, touching each object), as a fresh
    # interpreter's would not be walking a heap it did not make.
    gc.collect()
    gc.freeze()


_compiled: dict[tuple[str, bytes], CodeType] = {}     # (path, source) -> its code
COMPILED_KEPT = 8       # the latest scripts' code: a sweep's worker gets each task's copy
                        # at a new path, and must not keep them all


def compiled(script: str) -> Optional[CodeType]:
    """In the zygote, before the fork: the script's code, compiled as Python
    compiles a script it runs, once per path and source (read now: an edited
    copy is compiled afresh), not once per bot. None if it does not compile:
    the child then runs it as Python would, and says why."""
    try:
        with open(script, "rb") as f:
            source = f.read()
        key = (script, source)
        if key not in _compiled:
            while len(_compiled) >= COMPILED_KEPT:
                del _compiled[next(iter(_compiled))]     # the oldest
            _compiled[key] = compile(source, script, "exec", dont_inherit=True)
        return _compiled[key]
    except (OSError, SyntaxError, ValueError):
        return None


def run_as_main(script: str, code: Optional[CodeType]) -> None:
    """Run the script's code as `__main__`, as `python SCRIPT` does."""
    if code is None:
        import runpy
        runpy.run_path(script, run_name="__main__")
        return
    main = ModuleType("__main__")
    main.__file__ = script
    main.__cached__ = None
    sys.modules["__main__"] = main       # where dataclasses (and pickle) look the module up
    exec(code, main.__dict__)


def become(request: dict, program: Optional[CodeType]) -> int:
    """In the child: be `python SCRIPT ARGS...`, run it, return its exit code."""
    import io
    import threading
    import traceback
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, 4096)             # the zygote's pipes and selector are not the bot's
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    script = request["script"]
    sys.argv = [script, *request["args"]]
    sys.path[0] = os.path.dirname(script)
    # Unbuffered, as PYTHONUNBUFFERED=1 makes a fresh interpreter's streams.
    sys.stdin = open(0, closefd=False)
    sys.stdout = io.TextIOWrapper(open(1, "wb", 0, closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(open(2, "wb", 0, closefd=False), write_through=True,
                                  errors="backslashreplace")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run_as_main(script, program)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    threading._shutdown()              # as the interpreter's own exit: join the threads
    import logging
    logging.shutdown()
    return code


def serve() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the test runner's Ctrl+C is not ours
    preload()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    stdin = sys.stdin.fileno()
    sel.register(stdin, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    children: set[int] = set()
    pending = b""

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    while True:
        for key, _ in sel.select():
            if key.fd == wake_r:
                os.read(wake_r, 4096)
                continue
            chunk = os.read(stdin, 65536)
            if not chunk:                                  # the suite is done
                for pid in children:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                program = compiled(request["script"])
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    code = 1
                    try:
                        code = become(request, program)
                    finally:
                        os._exit(code)
                children.add(pid)
                say(f"pid {pid}")
        while children:                                    # reap whoever ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            say(f"exit {pid} {os.waitstatus_to_exitcode(status)}")


if __name__ == "__main__":
    serve()
