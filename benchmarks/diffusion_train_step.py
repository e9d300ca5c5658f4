r"""Training-step speed of the DDPM and iDDPM CIFAR-10 U-Nets: forward, backward, Adam; fp32.

  python benchmarks/diffusion_train_step.py [--batch=8] [--repeats=5] [--models=ddpm,iddpm]
      [--rng_impl=threefry2x32]

ddpm:  DDPM CIFAR-10 U-Net (35.7M), L_simple, linear schedule T=1000, dropout 0.1.
iddpm: iDDPM CIFAR-10 U-Net (52.5M), L_hybrid with the learned variance, cosine T=4000,
       dropout 0.3.
Each step draws t, noise and dropout masks, computes the loss and its gradient, and applies
Adam, all in one jitted function (the bare loss and optimiser; `our_step.py` times the
whole train step of the configs, EMA included, and `side_by_side.py` puts it beside
improved-diffusion's own). Prints one JSON line: compile seconds, median seconds per step,
images/s, the reference figures (`REFERENCE_IMAGES_PER_S`), and the load average before and
after. Measured figures: benchmarks/README.md.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from diffusion.losses import training_losses
from diffusion.reverse import Parameterization
from diffusion.schedules import make_schedule
from diffusion.unet import unet_from_config
from gencore.config_util import load_config

_BATCH = flags.DEFINE_integer("batch", 8, "Images per step.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps per model (after one warm-up).")
_MODELS = flags.DEFINE_list("models", ["ddpm", "iddpm"], "Which U-Nets to time.")
_RNG = flags.DEFINE_string("rng_impl", "threefry2x32", "JAX PRNG for t, noise and dropout: JAX's "
                           "default 'threefry2x32', as in training, or 'rbg' (XLA's "
                           "RngBitGenerator; 2.4x slower per bit on the 2-core EPYC).")

SETTINGS = {
    "ddpm": dict(config="configs/diffusion/ddpm_cifar10.py", schedule="linear", steps=1000,
                 lr=2e-4, parameterization=Parameterization("eps", "fixedlarge"), loss="simple"),
    "iddpm": dict(config="configs/diffusion/iddpm_cifar10.py:cosine_hybrid", schedule="cosine",
                  steps=4000, lr=1e-4, parameterization=Parameterization("eps", "learned_range"),
                  loss="hybrid"),
}
#: improved-diffusion's UNetModel, batch 8, fp32, in images/s, measured on a 2-core CPU where
#: PyTorch runs 3.3x faster than on the machine of benchmarks/README.md.
REFERENCE_IMAGES_PER_S = {"ddpm": 7.7, "iddpm": 4.9}


def key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl=_RNG.value)


def jax_step(name: str, batch: int):
    """(compiled step, initial state, compile seconds) of one setting."""
    cfg = SETTINGS[name]
    model = unet_from_config(load_config(cfg["config"]).model)
    schedule = make_schedule(cfg["schedule"], cfg["steps"])
    opt = optax.adam(cfg["lr"])
    x0 = jax.random.uniform(key(0), (batch, 32, 32, 3), minval=-1.0, maxval=1.0)
    params = jax.jit(model.init)(key(1), x0, jnp.zeros((batch,)))["params"]

    def step(params, opt_state, rng):
        k_t, k_n, k_d = jax.random.split(rng, 3)
        i = jax.random.randint(k_t, (batch,), 0, schedule.num_steps)
        noise = jax.random.normal(k_n, x0.shape)

        def loss_fn(p):
            def model_fn(x, t):
                return model.apply({"params": p}, x, t, train=True, rngs={"dropout": k_d})

            terms = training_losses(model_fn, cfg["parameterization"], schedule, x0, i, noise,
                                    cfg["loss"])
            return jnp.mean(terms["loss"])

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = (params, opt.init(params))
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(*state, key(2)).compile()
    return compiled, state, time.perf_counter() - t0


def main(_) -> None:
    load_before = os.getloadavg()[0]
    result = {"batch": _BATCH.value, "dtype": "float32", "device": jax.devices()[0].platform,
              "rng_impl": _RNG.value}
    for name in _MODELS.value:
        compiled, state, compile_s = jax_step(name, _BATCH.value)
        state = compiled(*state, key(3))[:2]
        jax.block_until_ready(state)
        ours = []
        for r in range(_REPEATS.value):
            t0 = time.perf_counter()
            *state, loss = compiled(*state, key(4 + r))
            loss.block_until_ready()
            ours.append(time.perf_counter() - t0)
        sec = float(np.median(ours))
        entry = {"compile_s": round(compile_s, 1), "s_per_step": round(sec, 3),
                 "images_per_s": round(_BATCH.value / sec, 3),
                 "reference_images_per_s": REFERENCE_IMAGES_PER_S[name],
                 "speedup_vs_reference": round(_BATCH.value / sec / REFERENCE_IMAGES_PER_S[name],
                                               3)}
        result[name] = entry
    result["load_avg_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
