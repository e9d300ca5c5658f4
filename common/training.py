"""The training loop shared by every model: resume, preemption, logging, samples, checkpoints.

A model supplies its initial state, a jitted step and a stream of global batches; this loop
restores the latest complete checkpoint of the workdir (or starts fresh), runs the steps
with clu metric writers (TensorBoard event files in the workdir plus console lines) and a
progress report with ETA, writes sample sheets and orbax checkpoints every N steps, and on
SIGTERM writes a checkpoint and returns. The batch stream is restarted at the restored step,
so resuming neither skips nor repeats data. Periodic hooks (`PeriodicHook`) add model-specific
work every N steps: extra scalars (e.g. singular values of the weights), keeping the checkpoints
saved so far, or stopping (e.g. at a training collapse).
"""

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags, logging
from clu import metric_writers, periodic_actions
from ml_collections import config_flags

from common.checkpoint import Checkpointer, mark_training_finished
from common.preemption import PreemptionHandler

_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() with no arguments (Cloud TPU pods).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, to run several processes by hand.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Process count (with coordinator).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's id (with coordinator).")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "Number of (fake) CPU devices for this process, e.g. to rehearse a pod.")


def setup_process() -> None:
    """Console logging at INFO; devices and processes from the flags above (call first)."""
    logging.set_stderrthreshold("info")
    if _CPU_DEVICES.value:
        jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
    if _COORDINATOR.value:
        jax.distributed.initialize(_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    elif _MULTIHOST.value:
        jax.distributed.initialize()
    logging.info("process %d/%d, %d local / %d global devices", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())


def train_main(default_config: str,
               train_and_evaluate: Callable[[ml_collections.ConfigDict, str], Any]) -> None:
    """A model's train job, ``python -m <model>.main --config=FILE[:variant] --workdir=DIR``
    (config fields overridable, plus the process flags above): ``setup_process()``, then
    ``train_and_evaluate(config, workdir)``. Defines the flags, so call it under ``__main__``."""
    config = config_flags.DEFINE_config_file("config", default_config,
                                             "Config file[:variant]; fields overridable.")
    workdir = flags.DEFINE_string("workdir", None, "Checkpoints, logs and samples go here.",
                                  required=True)

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        setup_process()
        train_and_evaluate(config.value, workdir.value)

    app.run(main)


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
    logging.info("Compiled the train step in %.1f s", time.perf_counter() - start)
    ocp.multihost.get_barrier_sync_fn()(key="train_step_compiled",
                                        timeout_ms=COMPILE_BARRIER_TIMEOUT_S * 1000)
    return compiled


def abstract_like(state: Any) -> Any:
    """Shapes, dtypes and shardings of ``state``, as a restore target."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


@dataclasses.dataclass(frozen=True)
class HookResult:
    """What a periodic hook asks of the training loop.

    scalars: written to the metric writer at this step (and passed to later hooks);
    keep_checkpoints: never delete the checkpoints saved so far (`Checkpointer.keep`);
    stop: end training after this step without saving it, and mark the run finished.
    """

    scalars: dict[str, float] = dataclasses.field(default_factory=dict)
    keep_checkpoints: bool = False
    stop: bool = False


@dataclasses.dataclass(frozen=True)
class PeriodicHook:
    """``run(step, state, scalars)`` after every step that is a multiple of ``every`` (0: never).

    ``scalars`` holds what was logged at this step so far: the step's metrics on logging steps
    (every ``train.log_every``) and earlier hooks' scalars; {} otherwise. Every process calls
    it; results must agree across processes.
    """

    every: int
    run: Callable[[int, Any, dict[str, float]], HookResult | None]


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
    write_samples: Callable[[Any, int], None] | None = None,
    hooks: Sequence[PeriodicHook] = (),
) -> Any:
    """Train from the latest checkpoint in ``workdir`` to ``config.train.steps``.

    init_state() -> the initial state (a pytree of global arrays with a scalar ``step``);
    train_step: a ``jax.jit`` function, compiled before the first step (`compile_on_every_process`);
    batches_from(step) -> iterator of global batches starting with the one for ``step``;
    write_samples(state, step) writes a sample sheet (called every ``train.sample_every``);
    hooks run after each step's logging, in order. Returns the final state.
    """
    train = config.train
    checkpointer = Checkpointer(workdir, config=config, save_every=train.checkpoint_every,
                                max_to_keep=train.keep_checkpoints)
    latest = checkpointer.latest_step()
    batches = batches_from(latest or 0)     # a missing dataset fails here, before any compile
    state = init_state()
    if latest is not None:
        logging.info("Resuming from the checkpoint at step %d in %s", latest, workdir)
        state = checkpointer.restore(abstract_like(state), latest)
    first = int(jax.device_get(state.step))
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    if first == 0:
        writer.write_hparams(dict(config.to_dict()["train"]))
    progress = periodic_actions.ReportProgress(num_train_steps=train.steps, writer=writer,
                                               every_steps=train.log_every)
    with PreemptionHandler() as preemption:   # SIGTERM while compiling: stop after 1 step
        if first < train.steps:
            first_batch = next(batches)
            train_step = compile_on_every_process(train_step, state, first_batch)
            batches = itertools.chain([first_batch], batches)
        step, last_log, last_log_step, halted = first, time.perf_counter(), first, False
        while step < train.steps:
            state, metrics = train_step(state, next(batches))
            step += 1
            progress(step)
            scalars = {}
            if step % train.log_every == 0 or step == train.steps:
                scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
                now = time.perf_counter()
                scalars["images_per_sec"] = images_per_step * (step - last_log_step) / (
                    now - last_log)
                last_log, last_log_step = now, step
                writer.write_scalars(step, scalars)
            halted = run_hooks(hooks, step, state, scalars, writer, checkpointer)
            if write_samples and (step % train.sample_every == 0 or step == train.steps):
                write_samples(state, step)
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
    checkpointer.close()
    return state


def first_process_array(x: jax.Array) -> np.ndarray:
    """The host copy of a replicated global array (readable on any process)."""
    return np.asarray(x.addressable_data(0))
