"""The shared training loop with several processes."""

import sys
from pathlib import Path

from helpers import run_two_processes

WORKER = Path(__file__).with_name("skewed_start_worker.py")


def test_process_that_compiles_40s_late_still_joins_the_first_collective(tmp_path):
    """CPU collectives give up when a process starts its first one 30 s after the others; the
    loop waits for every process to finish compiling the step before running it."""
    outputs = run_two_processes(lambda i, port: [
        sys.executable, str(WORKER), f"--workdir={tmp_path}", f"--process-id={i}",
        f"--port={port}", "--delay=40"])
    for out in outputs:
        assert "w 4.5" in out   # 3 steps of the mean of [1, 1, 2, 2]
