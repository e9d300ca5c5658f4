r"""Sampling throughput of the DDPM CIFAR-10 U-Net (35.7M parameters) at 32x32, fp32.

  python benchmarks/diffusion_sample.py [--batch=8] [--repeats=2] [--full_1000]

Times the compiled samplers (one lax.scan each, random weights) on one batch: 50-step
strided ancestral sampling, 50-step DDIM (eta = 0), and 1000-step ancestral sampling. Every
step costs one network evaluation, so by default the 1000-step figure is extrapolated from
the measured 50-step time per step (`"extrapolated_1000": true`); --full_1000 runs the whole
1000-step scan instead. Prints one JSON line: seconds per batch, images/s, per-step
seconds, compile seconds, and the load average before and after (other processes on the
machine slow every figure down).
"""

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from diffusion.reverse import Parameterization, sample
from diffusion.schedules import get_betas, make_schedule, respace, spaced_timesteps
from diffusion.unet import unet_from_config
from gencore.config_util import load_config

MODEL = "ddpm_cifar10"


def compile_and_time(fn: Callable, args: tuple, repeats: int) -> tuple[float, float]:
    """(compile seconds, median seconds per call over ``repeats`` calls) of ``jax.jit(fn)``
    on ``args``; the calls run after compiling and wait for their results."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return compile_s, float(np.median(times))


def time_samplers(batch: int, repeats: int, full_1000: bool) -> dict[str, Any]:
    """Per sampler ('ancestral_50', 'ddim_50', 'ancestral_1000'): s_per_batch, images_per_s
    (and, when measured, s_per_step and compile_s) of the DDPM CIFAR-10 U-Net on ``batch``
    images; 'extrapolated_1000' says whether the 1000-step figures were extrapolated."""
    model = unet_from_config(load_config(f"configs/diffusion/{MODEL}.py").model)
    shape = (batch, 32, 32, 3)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros(shape), jnp.zeros(shape[:1]))
    # Random non-zero output layers, so that the samples are not all zero.
    params = jax.tree.map(lambda p: p + 0.01 * jax.random.normal(jax.random.key(1), p.shape),
                          params)
    parameterization = Parameterization("eps", "fixedlarge")
    betas = get_betas("linear", 1000)
    samplers = {
        "ancestral_50": (respace(betas, spaced_timesteps(1000, 50)), "ancestral"),
        "ddim_50": (respace(betas, spaced_timesteps(1000, 50)), "ddim"),
    }
    if full_1000:
        samplers["ancestral_1000"] = (make_schedule("linear", 1000), "ancestral")
    result: dict[str, Any] = {}
    for name, (schedule, method) in samplers.items():

        def run(variables, keys, schedule=schedule, method=method):
            def model_fn(x, t):
                return model.apply(variables, x, t)

            return sample(model_fn, parameterization, schedule, keys, shape, method=method)

        keys = jax.random.split(jax.random.key(2), batch)   # one key per sample
        compile_s, sec = compile_and_time(run, (params, keys), repeats)
        result[name] = {"s_per_batch": round(sec, 3), "images_per_s": round(batch / sec, 4),
                        "s_per_step": round(sec / schedule.num_steps, 4),
                        "compile_s": round(compile_s, 1)}
    if not full_1000:
        per_step = result["ancestral_50"]["s_per_step"]
        result["ancestral_1000"] = {"s_per_batch": round(1000 * per_step, 1),
                                    "images_per_s": round(batch / (1000 * per_step), 4)}
    result["extrapolated_1000"] = not full_1000
    return result


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    load_before = os.getloadavg()[0]
    result = {"model": MODEL, "batch": f.batch, "dtype": "float32",
              "devices": str(jax.devices()[0].platform),
              **time_samplers(f.batch, f.repeats, f.full_1000)}
    result["load_avg_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result))


def define_flags() -> None:
    """--batch, --repeats and --full_1000 (call under ``__main__``)."""
    flags.DEFINE_integer("batch", 8, "Images per batch.")
    flags.DEFINE_integer("repeats", 2, "Timed batches per model (after compiling).")
    flags.DEFINE_bool("full_1000", False, "Run the 1000-step sampler instead of "
                      "extrapolating it from the 50-step time per step.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
