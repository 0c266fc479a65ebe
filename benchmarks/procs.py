"""Child processes of the harness: spawn, talk JSON lines, and always clean up."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent

_LIVE: set[Child] = set()


class ChildError(RuntimeError):
    """A child died, timed out or answered an error."""


class Child:
    """One ``python -m benchmarks.<module>`` process driven over stdin/stdout."""

    def __init__(self, name: str, module: str, args: list[str], log_dir: Path) -> None:
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = (log_dir / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        _LIVE.add(self)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, name=f"{name}-stdout", daemon=True)
        self._thread.start()
        self.ps = psutil.Process(self.proc.pid)

    def _pump(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, obj: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write((json.dumps(obj) + "\n").encode())
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ChildError(f"{self.name}: cannot write to it ({exc}){self._tail()}") from None

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ChildError(f"{self.name}: no answer within {timeout:g} s") from None
        if line is None:
            self.proc.wait(timeout=5)
            raise ChildError(f"{self.name}: exited with code {self.proc.returncode}{self._tail()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise ChildError(f"{self.name}: {answer['error']}")
        return answer

    def request(self, obj: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(obj)
        return self.receive(timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (its own accounting, psutil)."""
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def sched_seconds(self) -> float:
        """On-CPU time in ns resolution from the scheduler (all threads); a cross-check."""
        total = 0
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            self._log.flush()
            text = Path(self._log.name).read_text(errors="replace").strip()
            if text:
                return "; stderr: " + text[-800:]
        return ""

    def close(self, timeout: float = 10.0) -> None:
        """Ask it to quit (EOF on stdin), then terminate, then kill."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=3)
        _LIVE.discard(self)
        with contextlib.suppress(OSError):
            self._log.close()

    def kill(self) -> None:
        """At once, no questions (Ctrl-C)."""
        with contextlib.suppress(OSError):
            if self.proc.poll() is None:
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=3)
        _LIVE.discard(self)
        with contextlib.suppress(OSError):
            self._log.close()


def kill_all() -> None:
    """Last resort (Ctrl-C, a crash): kill every child still alive, by pid."""
    for child in list(_LIVE):
        with contextlib.suppress(OSError):
            if child.proc.poll() is None:
                child.proc.kill()
    deadline = time.monotonic() + 5
    for child in list(_LIVE):
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        _LIVE.discard(child)
