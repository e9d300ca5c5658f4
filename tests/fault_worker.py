"""A toy job for `gencore.training.run_training`, for the fault-injection tests.

The state is a float32 array of ``--rows`` x 256 (4 MiB at 4096 rows, so a kill often lands
inside a save) plus a step; step n adds batch n, a pure function of n, so the final state after
any pattern of stops and resumes equals an uninterrupted run's. ``--fail-save-at=N`` makes the
checkpoint writer raise while saving step N (a failing disk). Run as the train job would be:
``python tests/fault_worker.py --workdir=W [--steps=N] ...``; it prints the loop's progress
lines and ``done <step>``.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from flax import struct

from gencore import checkpoint, console
from gencore.training import run_training

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)
_STEPS = flags.DEFINE_integer("steps", 12, "Steps to train to.")
_ROWS = flags.DEFINE_integer("rows", 64, "Rows of the state array.")
_EVERY = flags.DEFINE_integer("checkpoint_every", 1, "Checkpoint interval.")
_KEEP = flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
_FAIL_SAVE_AT = flags.DEFINE_integer("fail_save_at", -1, "Make the save of this step fail.")


@struct.dataclass
class ToyState:
    step: jax.Array
    w: jax.Array


def toy_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"model": {"rows": _ROWS.value}, "train": dict(
        steps=_STEPS.value, log_every=1, sample_every=10**6,
        checkpoint_every=_EVERY.value, keep_checkpoints=_KEEP.value)})


def batch(n: int, rows: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((rows, 256)).astype(np.float32)


def fail_saves_at(step_to_fail: int) -> None:
    """Makes `Checkpointer.save` raise inside orbax's writer when it saves ``step_to_fail``."""
    save = checkpoint.ocp.CheckpointManager.save

    def failing_save(self, step, *args, **kwargs):
        if step == step_to_fail:
            raise OSError(28, "No space left on device (injected)")
        return save(self, step, *args, **kwargs)

    checkpoint.ocp.CheckpointManager.save = failing_save


def main(argv: list[str]) -> None:
    del argv
    console.setup_job_logging(_WORKDIR.value, "train")
    if _FAIL_SAVE_AT.value >= 0:
        fail_saves_at(_FAIL_SAVE_AT.value)
    rows = _ROWS.value

    def batches_from(start: int):
        n = start
        while True:
            yield jnp.asarray(batch(n, rows))
            n += 1

    @jax.jit
    def step(state: ToyState, x: jax.Array) -> tuple[ToyState, dict]:
        return state.replace(step=state.step + 1, w=state.w + x), {"loss": x.mean()}

    final = run_training(
        toy_config(), _WORKDIR.value,
        init_state=lambda: ToyState(jnp.zeros((), jnp.int32), jnp.zeros((rows, 256))),
        train_step=step, batches_from=batches_from, images_per_step=rows)
    print(f"done {int(final.step)}", flush=True)


if __name__ == "__main__":
    app.run(console.stop_on_error("train", main))
