"""A toy job for `gencore.training.run_training` in one of two processes, one arriving late.

Each step adds the mean of a batch sharded over every device of both processes to a replicated
scalar, so the first step's collective spans the processes. Process 1 spends ``--delay``
more seconds tracing the step, like a process whose compile runs on a busier host. Prints
``w <value>`` at the end.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec


@struct.dataclass
class ToyState:
    step: jax.Array
    w: jax.Array


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, required=True)
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", 2)
    jax.distributed.initialize(f"127.0.0.1:{args.port}", num_processes=2,
                               process_id=args.process_id)
    from gencore.training import run_training

    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    config = ml_collections.ConfigDict({"train": dict(
        steps=3, log_every=1, sample_every=1000, checkpoint_every=1000, keep_checkpoints=1)})

    def init_state() -> ToyState:
        return jax.device_put(ToyState(jnp.zeros((), jnp.int32), jnp.zeros(())), replicated)

    def batches_from(start: int):
        local = np.full((jax.local_device_count(),), args.process_id + 1, np.float32)
        while True:
            yield jax.make_array_from_process_local_data(
                NamedSharding(mesh, PartitionSpec("data")), local, (jax.device_count(),))

    @jax.jit
    def step(state: ToyState, batch: jax.Array) -> tuple[ToyState, dict]:
        if args.process_id == 1:   # runs once, while tracing
            time.sleep(args.delay)
        return (state.replace(step=state.step + 1, w=state.w + batch.mean()),
                {"batch_mean": batch.mean()})

    final = run_training(config, args.workdir, init_state=init_state, train_step=step,
                         batches_from=batches_from, images_per_step=jax.device_count())
    print(f"w {float(np.asarray(final.w.addressable_data(0)))}", flush=True)


if __name__ == "__main__":
    main()
