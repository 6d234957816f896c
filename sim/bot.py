"""The real, unmodified tick_taker.py as a subprocess, for the tools and the tests.

Both the replay and the benchmark run the bot exactly as a user would: its
real command line and environment, pointed at the simulated Alpaca. The test
suite (use_zygote) forks each bot from a process that imported the bot's
libraries once (sim/zygote.py): the same script, argv, environment, folder
and log, without a second of imports per bot.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tick_taker.py"
WAIT_S = 10.0


def load_rules(script: Path) -> ModuleType:
    """A copy of tick_taker.py (a fork, say) imported as a module of its own,
    so the tools count its signals with its own rule; tick_taker itself for
    the one at the root. The script runs nothing on import (its main() is
    behind `if __name__ == "__main__"`)."""
    script = Path(script).resolve()
    if script == SCRIPT:
        import tick_taker
        return tick_taker
    # Named by its text: the same fork saved anywhere (a sweep's worker saves
    # each task's copy in a folder of its own) is loaded once.
    name = "tick_taker_" + hashlib.sha1(script.read_bytes()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise ValueError(f"{script} is not a Python script")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any Alpaca settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Forked:
    """A bot forked by this process's zygote (sim/zygote.py), with the part of
    subprocess.Popen's interface the tools use."""

    def __init__(self, zygote: "Zygote", pid: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self.returncode = self.zygote.exits.get(self.pid)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        with self.zygote.changed:
            if not self.zygote.changed.wait_for(lambda: self.poll() is not None, timeout):
                raise subprocess.TimeoutExpired(f"bot {self.pid}", timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """One per test process, started on first use: it has imported the bot's
    libraries once, and forks a bot in milliseconds (sim/zygote.py)."""

    def __init__(self) -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}        # no BLAS threads in a process that forks
        self.proc = subprocess.Popen([sys.executable, "-m", "sim.zygote"], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.exits: dict[int, int] = {}
        self.pids: "queue.Queue[int]" = queue.Queue()
        self.changed = threading.Condition()
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True, name="zygote").start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            kind, pid, *code = line.split()
            if kind == b"pid":
                self.pids.put(int(pid))
            else:
                with self.changed:
                    self.exits[int(pid)] = int(code[0])
                    self.changed.notify_all()
        self.pids.put(0)                           # the zygote died: no more bots

    def spawn(self, script: str, args: list[str], env: dict[str, str], cwd: Path,
              log: Path) -> Forked:
        request = json.dumps({"script": script, "args": args, "env": env, "cwd": str(cwd),
                              "log": str(log)})
        with self.lock:
            self.proc.stdin.write(request.encode() + b"\n")
            self.proc.stdin.flush()
            pid = self.pids.get(timeout=WAIT_S)
        if not pid:
            raise RuntimeError("the zygote (sim/zygote.py) has died")
        return Forked(self, pid)


_zygote: Optional[Zygote] = None
_use_zygote = False


def use_zygote() -> None:
    """From now on this process starts bots by forking a zygote (the test
    suite's conftest calls this), started with the first bot: the same
    script, started in milliseconds instead of a second of imports."""
    global _use_zygote
    _use_zygote = True


def zygote() -> Optional[Zygote]:
    global _zygote
    if _use_zygote and (_zygote is None or _zygote.proc.poll() is not None):
        _zygote = Zygote()
    return _zygote


class Bot:
    """The real, unmodified tick_taker.py in a subprocess, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path,
                 command: Optional[list[str]] = None, log_name: str = "bot.log",
                 fresh: bool = False) -> None:
        """`fresh`: a new interpreter even where the zygote is in use."""
        self.log_path = cwd / log_name
        self._log = open(self.log_path, "wb")
        command = command or [sys.executable, str(SCRIPT)]
        if (not fresh and len(command) == 2 and command[0] == sys.executable
                and (z := zygote())):
            self.proc = z.spawn(str(Path(command[1]).resolve()), list(args), env, cwd,
                                self.log_path)
        else:
            self.proc = subprocess.Popen([*command, *args], cwd=cwd, env=env,
                                         stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.ended = False            # stopped, killed or awaited on purpose: no surprise

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = WAIT_S, after: str = "") -> str:
        """Until `text` appears in the bot's output (after the first `after`,
        if given), or the bot exits. A wait for an order or a fill (text
        starting "BUY", "SELL" or "FILL") fails at once when the bot logs,
        meanwhile, that it did not follow a signal: its own reason."""
        deadline = time.monotonic() + timeout
        begun = len(self.output())
        order = text.startswith(("BUY", "SELL", "FILL"))
        while time.monotonic() < deadline:
            out = self.output()
            start = out.find(after)
            if start >= 0 and text in out[start:]:
                return out
            if self.proc.poll() is not None:
                break
            if order and (at := out.find(" not followed: ", begun)) >= 0:
                line = out[out.rfind("\n", 0, at) + 1:].split("\n", 1)[0]
                raise AssertionError(f"waiting in vain for the bot to log {text!r}: it says "
                                     f"{line}; output:\n{out}")
            time.sleep(0.02)
        raise AssertionError(f"bot never logged {text!r}; output:\n{self.output()}")

    def why_stuck(self, sign: Optional[str] = None) -> Optional[str]:
        """Why an order awaited from this bot cannot come: it exited, or it
        logged `sign` (say, why it did not follow a signal); None while it may."""
        if not self.ended and (code := self.proc.poll()) is not None:
            return f"the bot exited with code {code}; its output:\n{self.output()}"
        if sign:
            out = self.output()
            if (at := out.find(sign)) >= 0:
                line = out[out.rfind("\n", 0, at) + 1:].split("\n", 1)[0]
                return f"the bot says: {line}"
        return None

    def wait_exit(self, timeout: float = WAIT_S) -> int:
        self.ended = True
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"bot did not exit in {timeout}s; output:\n{self.output()}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = WAIT_S) -> int:
        """One Ctrl+C (or `sig`); return the exit code."""
        self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        self.ended = True
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)
        self._log.close()
