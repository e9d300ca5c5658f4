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

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from diffusion.reverse import Parameterization
from diffusion.sampling import sample
from diffusion.schedules import get_betas, make_schedule, respace, spaced_timesteps
from diffusion.unet import PAPER_MODELS, unet_from_config

_BATCH = flags.DEFINE_integer("batch", 8, "Images per batch.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed batches per sampler (after compiling).")
_FULL = flags.DEFINE_bool("full_1000", False, "Run the 1000-step sampler instead of "
                          "extrapolating it from the 50-step time per step.")


def main(_) -> None:
    load_before = os.getloadavg()[0]
    model = unet_from_config(PAPER_MODELS["ddpm_cifar10"])
    shape = (_BATCH.value, 32, 32, 3)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros(shape), jnp.zeros(shape[:1]))
    # Random non-zero output layers, so that the samples are not all zero.
    params = jax.tree.map(lambda p: p + 0.01 * jax.random.normal(jax.random.key(1), p.shape),
                          params)
    param = Parameterization("eps", "fixedlarge")
    betas = get_betas("linear", 1000)
    samplers = {
        "ancestral_50": (respace(betas, spaced_timesteps(1000, 50)), "ancestral"),
        "ddim_50": (respace(betas, spaced_timesteps(1000, 50)), "ddim"),
    }
    if _FULL.value:
        samplers["ancestral_1000"] = (make_schedule("linear", 1000), "ancestral")
    result = {"model": "ddpm_cifar10", "batch": _BATCH.value, "dtype": "float32",
              "devices": str(jax.devices()[0].platform)}
    for name, (schedule, method) in samplers.items():

        def run(variables, key, schedule=schedule, method=method):
            def model_fn(x, t):
                return model.apply(variables, x, t)

            return sample(model_fn, param, schedule, key, shape, method=method)

        t0 = time.perf_counter()
        compiled = jax.jit(run).lower(params, jax.random.key(2)).compile()
        compile_s = time.perf_counter() - t0
        times = []
        for r in range(_REPEATS.value):
            t0 = time.perf_counter()
            compiled(params, jax.random.key(3 + r)).block_until_ready()
            times.append(time.perf_counter() - t0)
        sec = float(np.median(times))
        result[name] = {"s_per_batch": round(sec, 3),
                        "images_per_s": round(_BATCH.value / sec, 4),
                        "s_per_step": round(sec / schedule.num_steps, 4),
                        "compile_s": round(compile_s, 1)}
    if not _FULL.value:
        per_step = result["ancestral_50"]["s_per_step"]
        result["ancestral_1000"] = {"s_per_batch": round(1000 * per_step, 1),
                                    "images_per_s": round(_BATCH.value / (1000 * per_step), 4)}
    result["extrapolated_1000"] = not _FULL.value
    result["load_avg_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
