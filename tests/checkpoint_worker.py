"""A tiny training job for the checkpoint tests, run as a subprocess (one or several processes).

The state is a global array sharded over every device of every process, a numpy step counter
and a PRNG key; each step adds 1 to the array, so after step k it holds `initial_weights() + k`.
The job resumes from the latest checkpoint, prints ``step <k>`` after each step, stops cleanly
on SIGTERM (agreed by all processes) and prints ``stopped <k>``.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

SHAPE = (16, 4)


def initial_weights(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def abstract_state(mesh: jax.sharding.Mesh, shape: tuple[int, ...] = SHAPE) -> dict:
    """Rows sharded over the mesh, a numpy step, a replicated typed PRNG key."""
    key = jax.eval_shape(lambda: jax.random.key(0))
    return {
        "w": jax.ShapeDtypeStruct(
            shape, jnp.float32, sharding=NamedSharding(mesh, PartitionSpec("data"))
        ),
        "step": jax.ShapeDtypeStruct((), np.int32),
        "key": jax.ShapeDtypeStruct(
            key.shape, key.dtype, sharding=NamedSharding(mesh, PartitionSpec())
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--save-every", type=int, default=1000)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    parser.add_argument("--rows", type=int, default=SHAPE[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-preemption-service", action="store_true")
    args = parser.parse_args()

    jax.config.update("jax_num_cpu_devices", args.devices)
    if args.no_preemption_service:
        jax.config.update("jax_enable_preemption_service", False)
    if args.num_processes > 1:
        jax.distributed.initialize(
            f"127.0.0.1:{args.port}", num_processes=args.num_processes, process_id=args.process_id
        )
    from gencore.checkpoint import Checkpointer, mark_training_finished
    from gencore.preemption import PreemptionHandler

    shape = (args.rows, SHAPE[1])
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    abstract = abstract_state(mesh, shape)
    checkpointer = Checkpointer(
        args.workdir, config={"model": {"rows": args.rows}}, save_every=args.save_every
    )
    start = checkpointer.latest_step()
    if start is None:
        start = 0
        w = jax.make_array_from_callback(
            shape, abstract["w"].sharding, lambda index: initial_weights(shape)[index]
        )
        key = jax.jit(lambda: jax.random.key(0), out_shardings=abstract["key"].sharding)()
        state = {"w": w, "step": np.int32(0), "key": key}
    else:
        state = checkpointer.restore(abstract)
    assert int(state["step"]) == start

    @jax.jit
    def train_step(w):
        return w + 1

    stop = False
    with PreemptionHandler() as preemption:
        for step in range(start + 1, args.steps + 1):
            state = {"w": train_step(state["w"]), "step": np.int32(step), "key": state["key"]}
            stop = preemption.should_stop(step)
            checkpointer.save(step, state, force=stop or step == args.steps)
            print(f"step {step}", flush=True)
            if stop:
                print(f"stopped {step}", flush=True)
                break
            time.sleep(args.step_seconds)
    checkpointer.wait_until_finished()
    if not stop:
        mark_training_finished(args.workdir)
    checkpointer.close()


if __name__ == "__main__":
    main()
