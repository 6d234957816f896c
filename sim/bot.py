"""The real, unmodified tick_taker.py as a subprocess, for the tools and the tests.

Both the replay and the benchmark run the bot exactly as a user would: its
real command line and environment, pointed at the simulated Alpaca.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import subprocess
import sys
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


class Bot:
    """The real, unmodified tick_taker.py in a subprocess, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path,
                 command: Optional[list[str]] = None, log_name: str = "bot.log") -> None:
        self.log_path = cwd / log_name
        self._log = open(self.log_path, "wb")
        command = command or [sys.executable, str(SCRIPT)]
        self.proc = subprocess.Popen([*command, *args], cwd=cwd, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.ended = False            # stopped, killed or awaited on purpose: no surprise

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = WAIT_S, after: str = "") -> str:
        """Until `text` appears in the bot's output (after the first `after`,
        if given), or the bot exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            start = out.find(after)
            if start >= 0 and text in out[start:]:
                return out
            if self.proc.poll() is not None:
                break
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
