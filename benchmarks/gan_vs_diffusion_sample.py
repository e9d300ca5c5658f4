r"""GAN vs diffusion sampling speed on the same CPU: images/s, fp32, random weights.

  python benchmarks/gan_vs_diffusion_sample.py [--batch=8] [--repeats=2] [--full_1000]

A GAN draws an image with one forward pass of G; a diffusion model needs one U-Net pass per
sampling step. This times, on one batch each, the compiled BigGAN G in inference mode
(``biggan.standing_stats.make_sampler``) for the digits config and the CIFAR-10 row 8 config
(32x32), and the DDPM CIFAR-10 U-Net (35.7M) with 50-step DDIM and 1000-step ancestral
sampling (``benchmarks/diffusion_sample.py``; by default the 1000-step figure is extrapolated
from the 50-step ancestral time per step, and the JSON says so). Prints one JSON line with the
figures, how many times faster each G is than each sampler, and the load average before and
after (other processes slow every figure down).
"""

import json
import os
from typing import Any

import jax
import numpy as np
from absl import app, flags
from diffusion_sample import compile_and_time, define_flags, time_samplers

from biggan import model as biggan_model
from biggan.standing_stats import make_sampler
from gencore.config_util import load_config

GENERATORS = {"biggan_digits": "configs/biggan/digits.py",
              "biggan_cifar10_row8": "configs/biggan/cifar10.py:row8"}
DIFFUSION_SAMPLERS = ("ddim_50", "ancestral_1000")


def time_generator(spec: str, batch: int, repeats: int) -> dict[str, Any]:
    """params, compile_s, s_per_batch and images_per_s of the G of config ``spec`` (random
    weights, BN statistics as initialised) on ``batch`` latents."""
    cfg = load_config(spec).model
    z, y, _ = biggan_model.example_inputs(cfg, batch)
    variables = biggan_model.build_generator(cfg).init(jax.random.key(0), z, y, train=False)
    params = variables["params"]
    g_state = {k: v for k, v in variables.items() if k != "params"}   # BN statistics, SN u
    rng = np.random.default_rng(0)
    z = rng.standard_normal(z.shape).astype(np.float32)
    y = (np.arange(batch) % cfg.num_classes).astype(np.int32)
    compile_s, sec = compile_and_time(make_sampler(cfg), (params, g_state, z, y), repeats)
    return {"config": spec, "params": biggan_model.count_params(params),
            "compile_s": round(compile_s, 1), "s_per_batch": round(sec, 4),
            "images_per_s": round(batch / sec, 2)}


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {"batch": f.batch, "dtype": "float32",
                              "devices": str(jax.devices()[0].platform),
                              "cpu_count": os.cpu_count()}
    for name, spec in GENERATORS.items():
        result[name] = time_generator(spec, f.batch, f.repeats)
    result["ddpm_cifar10"] = time_samplers(f.batch, f.repeats, f.full_1000)
    ddpm = result["ddpm_cifar10"]
    result["extrapolated_1000"] = ddpm["extrapolated_1000"]
    result["gan_speedup"] = {
        f"{name}_vs_{sampler}": round(result[name]["images_per_s"] / ddpm[sampler]["images_per_s"])
        for name in GENERATORS for sampler in DIFFUSION_SAMPLERS}
    result["load_avg_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result))


if __name__ == "__main__":
    define_flags()
    app.run(main)
