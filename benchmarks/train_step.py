r"""Time BigGAN's train step and print one JSON line.

  python benchmarks/train_step.py --config=configs/biggan/digits.py
  python benchmarks/train_step.py --config=configs/biggan/cifar10.py:pytorch_reference

Prints compile time, steady-state step time (median of --steps timed steps), real images/s
(batch_size x num_d_steps per step, as BigGAN-PyTorch counts), the step's FLOPs from XLA's
cost analysis beside the analytic count of its convolutions and matrix products
(`step_flops.biggan_step_flops`; `train_step_flops.py` says where they differ), the achieved
FLOP/s, and the FLOP/s of a large float32 matmul on the same devices for comparison. Runs on
the default backend (CPU here) on one device unless --devices says otherwise.
"""

import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import step_flops  # noqa: E402

from biggan import train_step  # noqa: E402
from gencore import sharding  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/biggan/digits.py", "Config.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after a warm-up step.")
_DEVICES = flags.DEFINE_integer("devices", 1, "Number of devices to shard the step over.")
_MATMUL = flags.DEFINE_integer("matmul_size", 2048, "Side of the reference float32 matmul.")


def matmul_flops_per_second(n: int, repeats: int = 5) -> float:
    """Achieved FLOP/s of an n x n float32 matmul (the machine's dense-compute yardstick)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    mesh = sharding.make_mesh(jax.devices()[: _DEVICES.value], config.model.bn_group_size)
    train = config.train
    rng = np.random.default_rng(0)
    shape = (train.num_d_steps, train.grad_accum, train.batch_size // train.grad_accum)
    r = config.model.resolution
    batch = jax.device_put(
        {"image": rng.uniform(-1, 1, (*shape, r, r, 3)).astype(np.float32),
         "label": rng.integers(0, config.model.num_classes, shape).astype(np.int32)},
        NamedSharding(mesh, train_step.UPDATE_SPEC))
    state = train_step.create_train_state(config, mesh)
    step = train_step.make_train_step(config, mesh)

    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    flops = float(compiled.cost_analysis().get("flops", float("nan")))
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(_STEPS.value):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    step_seconds = statistics.median(times)
    images = train.batch_size * train.num_d_steps
    matmul = matmul_flops_per_second(_MATMUL.value)
    print(json.dumps({
        "config": flags.FLAGS["config"].config_filename, "backend": jax.default_backend(),
        "devices": mesh.devices.size, "batch_size": train.batch_size,
        "num_d_steps": train.num_d_steps, "dtype": config.model.dtype,
        "compile_seconds": round(compile_seconds, 2), "step_seconds": round(step_seconds, 4),
        "step_seconds_all": [round(t, 4) for t in times],
        "real_images_per_second": round(images / step_seconds, 2),
        "step_flops": flops,
        "analytic_step_flops": step_flops.biggan_step_flops(config)["step"]["train"],
        "achieved_flops_per_second": flops / step_seconds,
        "matmul_flops_per_second": matmul,
        "fraction_of_matmul": round(flops / step_seconds / matmul, 3),
    }))


if __name__ == "__main__":
    app.run(main)
