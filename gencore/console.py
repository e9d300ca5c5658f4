"""What a job prints: a few readable lines on the console, the detailed log in a file.

`setup_job_logging(workdir, job)` sends absl's INFO log (the job's details and orbax's
checkpoint chatter) to `<workdir>/logs/<job>.log` (process p > 0: `<job>.p<p>.log`; for a
bucket workdir or none, a local file in the temp directory, whose path is printed). Warnings
and errors still reach the console, except orbax's warnings (such as the eval job's 'directory
is read only'), which go to the file as INFO. `-v 1` (absl's `--verbosity`) keeps the whole INFO
log on the console instead. `say(message)` prints one line on process 0's console and writes it
to the log; `progress_line` is the training loop's report every `log_every` steps.
`stop_on_error(job, main)` ends a job that raises with one console line naming the error (the
traceback goes to the log file, or to the console with `-v 1`).
"""

import io
import logging as std_logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping

import jax
from absl import flags, logging
from etils import epath

from gencore.metric_writer import is_local

_state: dict = {"log_to_console": True, "log_path": None}


class OrbaxWarningsToLog(std_logging.Filter):
    """Demotes orbax's warnings to INFO, so they reach the log file and not the console."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if record.levelno == std_logging.WARNING and f"{os.sep}orbax{os.sep}" in record.pathname:
            record.levelno, record.levelname = std_logging.INFO, "INFO"
        return True


def setup_job_logging(workdir: str | None, job: str,
                      setup_process: Callable[[], None] | None = None) -> str | None:
    """Routes the INFO log to the job's log file unless ``--verbosity`` >= 1, after running
    ``setup_process`` (the process flags; what it and JAX's start-up log goes to the file
    too); returns the file's path (None when the log stays on the console)."""
    verbose = flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1
    _state["log_to_console"] = verbose
    handler = logging.get_absl_handler().python_handler
    held = io.StringIO()
    if verbose:
        logging.set_stderrthreshold("info")
    else:
        logging.set_stderrthreshold("warning")
        if not any(isinstance(f, OrbaxWarningsToLog) for f in handler.filters):
            handler.addFilter(OrbaxWarningsToLog())
        handler.setStream(held)   # until the file's name (the process index) is known
    if setup_process:
        setup_process()
    if verbose:
        return None
    index = jax.process_index()
    name = f"{job}.log" if index == 0 else f"{job}.p{index}.log"
    if workdir and is_local(workdir):
        path = epath.Path(workdir) / "logs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        path = epath.Path(tempfile.gettempdir()) / f"{job}-{os.getpid()}-{name}"
    log = open(path, "a")  # noqa: SIM115 (open for the life of the job)
    log.write(held.getvalue())
    handler.setStream(log)
    _state["log_path"] = str(path)
    say(f"{job}: detailed log in {path}")
    return str(path)


def stop_on_error(job: str, main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    """``main`` for ``app.run``: an exception ends the job with exit status 1 and one line,
    '<job> failed: <type>: <message>', on the console; the traceback goes to the log."""

    def run(argv: list[str]) -> None:
        try:
            main(argv)
        except Exception as error:
            verbose = flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1
            if _state["log_path"] or verbose:   # the log file, or the console when asked for
                logging.info("%s failed", job, exc_info=True)
            where = (f" (traceback in {_state['log_path']})" if _state["log_path"]
                     else "" if verbose else " (-v 1 shows the traceback)")
            sys.exit(f"{job} failed: {type(error).__name__}: {error}{where}")

    return run


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
