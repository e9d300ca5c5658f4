"""Samplers: ancestral (DDPM Algorithm 2) and DDIM (Song et al. 2021, Eq. 12), one lax.scan.

Strided / respaced sampling (iDDPM Sec. 4) is sampling with a respaced `Schedule`
(`schedules.respace`): the network still sees the original timesteps. Classifier-free
guidance is a `model_fn` from `guidance.guided_model_fn`. Call inside `jax.jit` with the
network variables as arguments of the jitted function.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusion.reverse import ModelFn, Parameterization, p_mean_variance
from diffusion.schedules import Schedule, per_example

METHODS = ("ancestral", "ddim")


def sample(
    model_fn: ModelFn, param: Parameterization, s: Schedule, keys: jax.Array,
    shape: tuple[int, ...], method: str = "ancestral", eta: float = 0.0,
    clip_denoised: bool = True, x_T: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """Runs the reverse process over all steps of `s`, from x_T ~ N(0, I) to x_0 [shape].

    keys [shape[0]]: one PRNG key per example (e.g. `gencore.sample_keys.example_keys`);
    example b's x_T and noise are drawn from keys[b] alone, so a sample depends neither on the
    batch it is drawn in nor on how the batch is split over devices.

    method 'ancestral': x_{t-1} = mean_theta + sigma_t z with the variance of `param`
      (fixedlarge beta_t, fixedsmall beta~_t, or learned);
    method 'ddim': x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1} - sigma^2) eps_hat
      + sigma z with sigma = eta sqrt(beta~_t); eta = 0 is deterministic, eta = 1 with all
      steps is the ancestral 'fixedsmall' sampler.
    Step i uses the noise z_b = N(0, I) drawn with fold_in(key_z_b, i) per example b, the same
    for both methods (key_T_b, key_z_b = split(keys[b])).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    key_T, key_z = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)

    def per_example_normal(keys: jax.Array) -> jnp.ndarray:
        return jax.vmap(lambda k: jax.random.normal(k, shape[1:], jnp.float32))(keys)

    if x_T is None:
        x_T = per_example_normal(key_T)

    def step(x: jnp.ndarray, i: jnp.ndarray) -> tuple[jnp.ndarray, None]:
        iv = jnp.full((shape[0],), i, jnp.int32)
        p = p_mean_variance(param, s, model_fn(x, s.model_time(iv)), x, iv, clip_denoised)
        if method == "ancestral":
            mean, std = p.mean, jnp.exp(0.5 * p.log_variance)
        else:
            abar_prev = per_example(s.alphas_cumprod_prev[iv], x)
            std = eta * jnp.sqrt(per_example(s.posterior_variance[iv], x))
            mean = (jnp.sqrt(abar_prev) * p.pred_x0
                    + jnp.sqrt(jnp.maximum(1.0 - abar_prev - std**2, 0.0)) * p.pred_eps)
        z = per_example_normal(jax.vmap(lambda k: jax.random.fold_in(k, i))(key_z))
        return mean + jnp.where(i > 0, std, 0.0) * z, None

    x0, _ = jax.lax.scan(step, x_T, jnp.arange(s.num_steps - 1, -1, -1, dtype=jnp.int32))
    return x0

