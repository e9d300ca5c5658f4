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
    model_fn: ModelFn, param: Parameterization, s: Schedule, key: jax.Array,
    shape: tuple[int, ...], method: str = "ancestral", eta: float = 0.0,
    clip_denoised: bool = True, x_T: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """Runs the reverse process over all steps of `s`, from x_T ~ N(0, I) to x_0 [shape].

    method 'ancestral': x_{t-1} = mean_theta + sigma_t z with the variance of `param`
      (fixedlarge beta_t, fixedsmall beta~_t, or learned);
    method 'ddim': x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1} - sigma^2) eps_hat
      + sigma z with sigma = eta sqrt(beta~_t); eta = 0 is deterministic, eta = 1 with all
      steps is the ancestral 'fixedsmall' sampler.
    Step i uses the noise z = N(0, I) drawn with fold_in(key_z, i), the same for both methods.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    key_T, key_z = jax.random.split(key)
    if x_T is None:
        x_T = jax.random.normal(key_T, shape, jnp.float32)

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
        z = jax.random.normal(jax.random.fold_in(key_z, i), shape, jnp.float32)
        return mean + jnp.where(i > 0, std, 0.0) * z, None

    x0, _ = jax.lax.scan(step, x_T, jnp.arange(s.num_steps - 1, -1, -1, dtype=jnp.int32))
    return x0
