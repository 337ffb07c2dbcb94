"""Run an ``aecore`` command in a subprocess and send it a signal once it has started working."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def interrupt(argv: list[str], ready, env: dict | None = None, group: bool = False, delay: float = 0.0,
              signum: int = signal.SIGINT):
    """Start ``python -m aecore.cli *argv`` (its output JSON lines), read lines until
    ``ready(line)`` is true, wait ``delay`` seconds and send ``signum``: to the process, or with
    ``group`` to its whole process group, as a terminal's Ctrl-C does.
    Returns (exit status, every JSON line in order, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "aecore.cli", *argv],
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=group)
    lines = []
    try:
        while True:
            raw = proc.stdout.readline()
            if not raw:
                raise AssertionError(f"{argv[0]} ended before it was ready: {proc.stderr.read()}")
            lines.append(json.loads(raw))
            if ready(lines[-1]):
                break
        time.sleep(delay)
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            (os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill())
            proc.wait()
    return proc.returncode, lines + [json.loads(x) for x in out.splitlines()], err
