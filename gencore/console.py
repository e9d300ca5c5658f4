"""What a job prints: a few readable lines on the console, the detailed log in a file.

`setup_job_logging(workdir, job)` sends absl's INFO log (the job's details and orbax's
checkpoint chatter) to `<workdir>/logs/<job>.log` (process p > 0: `<job>.p<p>.log`; for a
bucket workdir, a local file in the temp directory, whose path is printed). Warnings and errors
still reach the console. `-v 1` (absl's `--verbosity`) keeps the whole INFO log on the console
instead. `say(message)` prints one line on process 0's console and writes it to the log;
`progress_line` is the training loop's report every `log_every` steps.
"""

import os
import sys
import tempfile
from collections.abc import Mapping

import jax
from absl import flags, logging
from etils import epath

from gencore.metric_writer import is_local

_state = {"log_to_console": True}


def setup_job_logging(workdir: str, job: str) -> str | None:
    """Routes the INFO log to the job's log file unless ``--verbosity`` >= 1; returns its path
    (None when the log stays on the console)."""
    verbose = flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1
    _state["log_to_console"] = verbose
    if verbose:
        logging.set_stderrthreshold("info")
        return None
    index = jax.process_index()
    name = f"{job}.log" if index == 0 else f"{job}.p{index}.log"
    if is_local(workdir):
        path = epath.Path(workdir) / "logs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        path = epath.Path(tempfile.gettempdir()) / f"{job}-{os.getpid()}-{name}"
    handler = logging.get_absl_handler().python_handler
    handler.setStream(open(path, "a"))  # noqa: SIM115 (open for the life of the job)
    logging.set_stderrthreshold("warning")
    say(f"{job}: detailed log in {path}")
    return str(path)


def say(message: str) -> None:
    """One console line on process 0 (and the INFO log)."""
    logging.info(message)
    if jax.process_index() == 0 and not _state["log_to_console"]:
        print(message, file=sys.stdout, flush=True)


def duration(seconds: float) -> str:
    """'1h02m', '4m48s' or '12s'."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(step: int, total: int, steps_per_sec: float,
                  scalars: Mapping[str, float]) -> str:
    """'step 250/1200 (21%)  3.3 steps/s  ETA 4m48s  d_loss_real 0.912  g_loss 1.23': the
    losses among ``scalars`` (every name containing 'loss')."""
    eta = duration((total - step) / steps_per_sec) if steps_per_sec > 0 else "?"
    losses = "  ".join(f"{k} {v:.4g}" for k, v in scalars.items() if "loss" in k)
    width = len(str(total))
    return (f"step {step:>{width}}/{total} ({100 * step / total:3.0f}%)  "
            f"{steps_per_sec:.3g} steps/s  ETA {eta}  {losses}").rstrip()
