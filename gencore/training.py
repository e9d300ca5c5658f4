"""The training loop shared by every model: resume, preemption, logging, samples, checkpoints.

A model supplies its initial state, a jitted step and a stream of global batches; this loop
restores the latest complete checkpoint of the workdir (or starts fresh), runs the steps,
writes TensorBoard event files in the workdir (`gencore.metric_writer`), prints a progress
line with steps/s, ETA and the losses every `train.log_every` steps (the detailed log goes to
`<workdir>/logs/train.log`, `gencore.console`), writes sample sheets and orbax checkpoints
every N steps, and on SIGTERM writes a checkpoint and returns. The batch stream is restarted
at the restored step, so resuming neither skips nor repeats data. Periodic hooks
(`gencore.hooks`) add model-specific work every N steps.
"""

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from gencore.checkpoint import (
    Checkpointer,
    UnreadableCheckpointError,
    mark_training_finished,
)
from gencore.config_util import check_config_arguments
from gencore.console import progress_line, say, setup_job_logging, stop_on_error
from gencore.hooks import PeriodicHook
from gencore.host_memory import configure_cpu_process
from gencore.images import image_grid, save_png
from gencore.metric_writer import MetricWriter
from gencore.preemption import PreemptionHandler


def define_process_flags() -> Callable[[], None]:
    """Defines the flags that say which devices and processes a job runs on (call it under
    ``__main__`` of an entry point); returns ``setup_process()``, which applies them (call it
    first in ``main``), after configuring a CPU-only process
    (`gencore.host_memory.configure_cpu_process`)."""
    multihost = flags.DEFINE_bool(
        "multihost", False, "Call jax.distributed.initialize() with no arguments (TPU pods).")
    coordinator = flags.DEFINE_string(
        "coordinator_address", None, "host:port of process 0, to run several processes by hand.")
    num_processes = flags.DEFINE_integer("num_processes", None,
                                         "Process count (with coordinator).")
    process_id = flags.DEFINE_integer("process_id", None, "This process's id (with coordinator).")
    cpu_devices = flags.DEFINE_integer(
        "cpu_devices", None, "Number of (fake) CPU devices for this process (pod rehearsal).")

    def setup_process() -> None:
        configure_cpu_process()
        if cpu_devices.value:
            jax.config.update("jax_num_cpu_devices", cpu_devices.value)
        if coordinator.value:
            jax.distributed.initialize(coordinator.value, num_processes=num_processes.value,
                                       process_id=process_id.value)
        elif multihost.value:
            jax.distributed.initialize()
        logging.info("process %d/%d, %d local / %d global devices", jax.process_index(),
                     jax.process_count(), jax.local_device_count(), jax.device_count())

    return setup_process


def train_main(default_config: str,
               train_and_evaluate: Callable[[ml_collections.ConfigDict, str], Any]) -> None:
    """A model's train job, ``python -m <model>.main --config=FILE[:variant] --workdir=DIR``
    (config fields overridable, plus the process flags of `define_process_flags`): set up the
    process and the log file, then ``train_and_evaluate(config, workdir)``. Defines the flags,
    so call it under ``__main__``."""
    config = config_flags.DEFINE_config_file("config", default_config,
                                             "Config file[:variant]; fields overridable.")
    workdir = flags.DEFINE_string("workdir", None, "Checkpoints, logs and samples go here.",
                                  required=True)
    setup_process = define_process_flags()

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        setup_job_logging(workdir.value, "train", setup_process)
        train_and_evaluate(config.value, workdir.value)

    check_config_arguments()
    app.run(stop_on_error("train", main))


COMPILE_BARRIER_TIMEOUT_S = 1800


def compile_on_every_process(step: Any, *args: Any) -> Any:
    """``step.lower(*args).compile()`` (``step`` jitted), then wait until every process has
    compiled it too; returns the compiled step.

    With several processes the step's first cross-process collective must start on all of
    them within 30 s (on CPU, gloo's connection set-up times out after that), but compile
    times differ by more than that on a busy host. This barrier goes through the
    coordination service instead, which waits up to ``COMPILE_BARRIER_TIMEOUT_S``.
    """
    start = time.perf_counter()
    compiled = step.lower(*args).compile()
    say(f"Compiled the train step in {time.perf_counter() - start:.1f} s")
    ocp.multihost.get_barrier_sync_fn()(key="train_step_compiled",
                                        timeout_ms=COMPILE_BARRIER_TIMEOUT_S * 1000)
    return compiled


SHEET_COLUMNS = 8


def write_sample_sheet(images: np.ndarray, workdir: str, step: int, writer: MetricWriter) -> None:
    """``<workdir>/samples/ema_<step>.png`` and the TensorBoard image 'samples' (process 0)."""
    if jax.process_index() == 0:
        sheet = image_grid(images, SHEET_COLUMNS)
        save_png(sheet, epath.Path(workdir) / "samples" / f"ema_{step:08d}.png")
        writer.write_images(step, {"samples": sheet})


def abstract_like(state: Any) -> Any:
    """Shapes, dtypes and shardings of ``state``, as a restore target."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def restore_newest_readable(checkpointer: Checkpointer, state: Any) -> Any:
    """The newest checkpoint that can be read, restored into the structure of ``state`` (or
    ``state`` itself if there is none). An unreadable one is moved aside (never deleted) with a
    warning naming it and why, and the previous one is tried."""
    for step in reversed(checkpointer.all_steps()):
        try:
            restored = checkpointer.restore(abstract_like(state), step)
        except UnreadableCheckpointError as error:
            aside = checkpointer.move_aside(step)
            logging.warning("%s. Moved it to %s; trying the previous checkpoint.", error, aside)
            continue
        say(f"Resuming from the checkpoint at step {step} in {checkpointer.directory}")
        return restored
    return state


def run_hooks(hooks: Sequence[PeriodicHook], step: int, state: Any, scalars: dict[str, float],
              writer: Any, checkpointer: Checkpointer) -> bool:
    """Runs the hooks due at ``step`` in order and applies their results; True to stop."""
    stop = False
    for hook in hooks:
        if not hook.every or step % hook.every:
            continue
        result = hook.run(step, state, scalars)
        if result is None:
            continue
        if result.scalars:
            writer.write_scalars(step, result.scalars)
            scalars = {**scalars, **result.scalars}
        if result.keep_checkpoints:   # after the pending save commits and rotates
            checkpointer.wait_until_finished()
            checkpointer.keep(checkpointer.all_steps())
        stop = stop or result.stop
    return stop


def run_training(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    init_state: Callable[[], Any],
    train_step: Callable[[Any, Any], tuple[Any, dict]],
    batches_from: Callable[[int], Iterator[Any]],
    images_per_step: int,
    sample_sheet: Callable[[Any], np.ndarray] | None = None,
    hooks: Sequence[PeriodicHook] = (),
) -> Any:
    """Train from the latest checkpoint in ``workdir`` to ``config.train.steps``.

    init_state() -> the initial state (a pytree of global arrays with a scalar ``step``);
    train_step: a ``jax.jit`` function, compiled before the first step (`compile_on_every_process`);
    batches_from(step) -> iterator of global batches starting with the one for ``step``;
    sample_sheet(state) -> images [N, H, W, C] in [-1, 1] on host, tiled ``SHEET_COLUMNS`` per
    row into ``<workdir>/samples/ema_<step>.png`` and TensorBoard's 'samples' image every
    ``train.sample_every`` steps;
    hooks run after each step's logging, in order. Returns the final state.
    """
    train = config.train
    checkpointer = Checkpointer(workdir, config=config, save_every=train.checkpoint_every,
                                max_to_keep=train.keep_checkpoints)
    latest = checkpointer.latest_step() or 0
    batches = batches_from(latest)     # a missing dataset fails here, before any compile
    state = restore_newest_readable(checkpointer, init_state())
    first = int(jax.device_get(state.step))
    if first != latest:
        batches = batches_from(first)
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    if first == 0:
        writer.write_hparams(dict(config.to_dict()["train"]))
    with PreemptionHandler() as preemption:   # SIGTERM while compiling: stop after 1 step
        if first < train.steps:
            first_batch = next(batches)
            train_step = compile_on_every_process(train_step, state, first_batch)
            batches = itertools.chain([first_batch], batches)
        step, last_log, last_log_step, halted = first, time.perf_counter(), first, False
        while step < train.steps:
            state, metrics = train_step(state, next(batches))
            step += 1
            scalars = {}
            if step % train.log_every == 0 or step == train.steps:
                scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
                now = time.perf_counter()
                steps_per_sec = (step - last_log_step) / (now - last_log)
                scalars["images_per_sec"] = images_per_step * steps_per_sec
                scalars["steps_per_sec"] = steps_per_sec
                last_log, last_log_step = now, step
                writer.write_scalars(step, scalars)
                say(progress_line(step, train.steps, steps_per_sec, scalars))
            halted = run_hooks(hooks, step, state, scalars, writer, checkpointer)
            if sample_sheet and (step % train.sample_every == 0 or step == train.steps):
                write_sample_sheet(sample_sheet(state), workdir, step, writer)
            if halted:
                logging.warning("A hook stopped training at step %d (this step is not saved).",
                                step)
                break
            stop = preemption.should_stop(step)
            checkpointer.save(step, state, force=stop or step == train.steps)
            if stop:
                logging.warning("SIGTERM: saved the checkpoint at step %d; exiting.", step)
                break
    checkpointer.wait_until_finished()
    writer.flush()
    if step >= train.steps or halted:
        mark_training_finished(workdir)
    say(f"Stopped at step {step}; checkpoints in {checkpointer.directory}")
    checkpointer.close()
    writer.close()
    return state

