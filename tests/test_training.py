"""The shared training loop with several processes."""

import subprocess
import sys
from pathlib import Path

from helpers import JOB_TIMEOUT_S, free_port, worker_env

WORKER = Path(__file__).with_name("skewed_start_worker.py")


def test_process_that_compiles_40s_late_still_joins_the_first_collective(tmp_path):
    """CPU collectives give up when a process starts its first one 30 s after the others; the
    loop waits for every process to finish compiling the step before running it."""
    port = free_port()
    procs = [subprocess.Popen(
        [sys.executable, str(WORKER), f"--workdir={tmp_path}", f"--process-id={i}",
         f"--port={port}", "--delay=40"], env=worker_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=JOB_TIMEOUT_S)
        assert p.returncode == 0, err[-3000:]
        assert "w 4.5" in out   # 3 steps of the mean of [1, 1, 2, 2]
