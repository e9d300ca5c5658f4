"""The reverse process p_theta(x_{t-1} | x_t) from a network output (DDPM 3.2, iDDPM 3.1), and
the samplers that run it: ancestral (DDPM Algorithm 2) and DDIM (Song et al. 2021, Eq. 12).

The network output [B, H, W, C] (or 2C with a learned variance) predicts eps, x_0 or
v = sqrt(abar) eps - sqrt(1 - abar) x_0 (`mean_type`); the variance is beta_t ("fixedlarge"),
the posterior variance beta~_t ("fixedsmall"), or learned as
Sigma = exp(v log beta_t + (1 - v) log beta~_t) with v = (out + 1) / 2 (iDDPM Eq. 15).

Strided / respaced sampling (iDDPM Sec. 4) is sampling with a respaced `Schedule`
(`schedules.respace`): the network still sees the original timesteps. Classifier-free
guidance is a `model_fn` from `guidance.guided_model_fn`. Call `sample` inside `jax.jit` with
the network variables as arguments of the jitted function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from diffusion.schedules import Schedule, per_example

#: model_fn(x_t [B, H, W, C], model time [B]) -> network output [B, H, W, C or 2C].
ModelFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]

MEAN_TYPES = ("eps", "x0", "v")
VAR_TYPES = ("fixedlarge", "fixedsmall", "learned_range")
METHODS = ("ancestral", "ddim")
"""Samplers of `sample`."""


@dataclasses.dataclass(frozen=True)
class Parameterization:
    """What the network predicts: `mean_type` in MEAN_TYPES, `var_type` in VAR_TYPES."""

    mean_type: str = "eps"
    var_type: str = "fixedlarge"

    def __post_init__(self) -> None:
        if self.mean_type not in MEAN_TYPES:
            raise ValueError(f"mean_type must be one of {MEAN_TYPES}, got {self.mean_type!r}")
        if self.var_type not in VAR_TYPES:
            raise ValueError(f"var_type must be one of {VAR_TYPES}, got {self.var_type!r}")

    @property
    def learn_sigma(self) -> bool:
        """Whether the network outputs the variance channels too (2C outputs)."""
        return self.var_type == "learned_range"


class Reverse(NamedTuple):
    """p_theta(x_{t-1} | x_t) = N(mean, variance) and the predictions it came from."""

    mean: jnp.ndarray
    variance: jnp.ndarray
    log_variance: jnp.ndarray
    pred_x0: jnp.ndarray
    pred_eps: jnp.ndarray


def x0_from_eps(s: Schedule, x_t: jnp.ndarray, i: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
    """x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)."""
    return (per_example(s.sqrt_recip_alphas_cumprod[i], x_t) * x_t
            - per_example(s.sqrt_recipm1_alphas_cumprod[i], x_t) * eps)


def eps_from_x0(s: Schedule, x_t: jnp.ndarray, i: jnp.ndarray, x0: jnp.ndarray) -> jnp.ndarray:
    """eps = (x_t / sqrt(abar) - x_0) / sqrt(1 / abar - 1)."""
    return ((per_example(s.sqrt_recip_alphas_cumprod[i], x_t) * x_t - x0)
            / per_example(s.sqrt_recipm1_alphas_cumprod[i], x_t))


def v_target(s: Schedule, x0: jnp.ndarray, i: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
    """v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022)."""
    return (per_example(s.sqrt_alphas_cumprod[i], x0) * eps
            - per_example(s.sqrt_one_minus_alphas_cumprod[i], x0) * x0)


def x0_from_v(s: Schedule, x_t: jnp.ndarray, i: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """x_0 = sqrt(abar) x_t - sqrt(1 - abar) v."""
    return (per_example(s.sqrt_alphas_cumprod[i], x_t) * x_t
            - per_example(s.sqrt_one_minus_alphas_cumprod[i], x_t) * v)


def split_output(parameterization: Parameterization, out: jnp.ndarray
                 ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Splits the network output into (mean part [.., C], variance part [.., C] or empty)."""
    if parameterization.learn_sigma:
        return jnp.split(out, 2, axis=-1)
    return out, out[..., :0]


def p_mean_variance(
    parameterization: Parameterization, s: Schedule, out: jnp.ndarray, x_t: jnp.ndarray,
    i: jnp.ndarray, clip_denoised: bool = True,
) -> Reverse:
    """p_theta(x_{t-1} | x_t) for network output `out` at x_t [B, H, W, C], steps i [B].

    The mean is the posterior mean q(x_{t-1} | x_t, x0_hat) with the predicted x0_hat,
    clipped to [-1, 1] when `clip_denoised` (DDPM Eq. 11 for eps prediction).
    """
    mean_out, var_out = split_output(parameterization, out)
    if parameterization.var_type == "learned_range":
        frac = (var_out + 1.0) / 2.0
        log_var = (frac * per_example(s.log_betas_clipped[i], x_t)
                   + (1.0 - frac) * per_example(s.posterior_log_variance_clipped[i], x_t))
        var = jnp.exp(log_var)
    else:
        log_table = (s.log_betas_clipped if parameterization.var_type == "fixedlarge"
                     else s.posterior_log_variance_clipped)
        log_var = jnp.broadcast_to(per_example(log_table[i], x_t), x_t.shape)
        var = jnp.exp(log_var)
    if parameterization.mean_type == "eps":
        pred_x0 = x0_from_eps(s, x_t, i, mean_out)
    elif parameterization.mean_type == "x0":
        pred_x0 = mean_out
    else:
        pred_x0 = x0_from_v(s, x_t, i, mean_out)
    if clip_denoised:
        pred_x0 = jnp.clip(pred_x0, -1.0, 1.0)
    pred_eps = eps_from_x0(s, x_t, i, pred_x0)
    mean, _, _ = s.q_posterior(pred_x0, x_t, i)
    return Reverse(mean, var, log_var, pred_x0, pred_eps)

def sample(
    model_fn: ModelFn, parameterization: Parameterization, s: Schedule, keys: jax.Array,
    shape: tuple[int, ...], method: str = "ancestral", eta: float = 0.0,
    clip_denoised: bool = True, x_T: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """Runs the reverse process over all steps of `s`, from x_T ~ N(0, I) to x_0 [shape].

    keys [shape[0]]: one PRNG key per example (e.g. `gencore.sample_keys.example_keys`);
    example b's x_T and noise are drawn from keys[b] alone, so a sample depends neither on the
    batch it is drawn in nor on how the batch is split over devices.

    method 'ancestral': x_{t-1} = mean_theta + sigma_t z with the variance of `parameterization`
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
        p = p_mean_variance(parameterization, s, model_fn(x, s.model_time(iv)), x, iv,
                            clip_denoised)
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

