"""The reverse process p_theta(x_{t-1} | x_t) from a network output (DDPM 3.2, iDDPM 3.1).

The network output [B, H, W, C] (or 2C with a learned variance) predicts eps, x_0 or
v = sqrt(abar) eps - sqrt(1 - abar) x_0 (`mean_type`); the variance is beta_t ("fixedlarge"),
the posterior variance beta~_t ("fixedsmall"), or learned as
Sigma = exp(v log beta_t + (1 - v) log beta~_t) with v = (out + 1) / 2 (iDDPM Eq. 15).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp

from diffusion.schedules import Schedule, per_example

#: model_fn(x_t [B, H, W, C], model time [B]) -> network output [B, H, W, C or 2C].
ModelFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]

MEAN_TYPES = ("eps", "x0", "v")
VAR_TYPES = ("fixedlarge", "fixedsmall", "learned_range")


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


def split_output(param: Parameterization, out: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Splits the network output into (mean part [.., C], variance part [.., C] or empty)."""
    if param.learn_sigma:
        return jnp.split(out, 2, axis=-1)
    return out, out[..., :0]


def p_mean_variance(
    param: Parameterization, s: Schedule, out: jnp.ndarray, x_t: jnp.ndarray, i: jnp.ndarray,
    clip_denoised: bool = True,
) -> Reverse:
    """p_theta(x_{t-1} | x_t) for network output `out` at x_t [B, H, W, C], steps i [B].

    The mean is the posterior mean q(x_{t-1} | x_t, x0_hat) with the predicted x0_hat,
    clipped to [-1, 1] when `clip_denoised` (DDPM Eq. 11 for eps prediction).
    """
    mean_out, var_out = split_output(param, out)
    if param.var_type == "learned_range":
        frac = (var_out + 1.0) / 2.0
        log_var = (frac * per_example(s.log_betas_clipped[i], x_t)
                   + (1.0 - frac) * per_example(s.posterior_log_variance_clipped[i], x_t))
        var = jnp.exp(log_var)
    else:
        log_table = (s.log_betas_clipped if param.var_type == "fixedlarge"
                     else s.posterior_log_variance_clipped)
        log_var = jnp.broadcast_to(per_example(log_table[i], x_t), x_t.shape)
        var = jnp.exp(log_var)
    if param.mean_type == "eps":
        pred_x0 = x0_from_eps(s, x_t, i, mean_out)
    elif param.mean_type == "x0":
        pred_x0 = mean_out
    else:
        pred_x0 = x0_from_v(s, x_t, i, mean_out)
    if clip_denoised:
        pred_x0 = jnp.clip(pred_x0, -1.0, 1.0)
    pred_eps = eps_from_x0(s, x_t, i, pred_x0)
    mean, _, _ = s.q_posterior(pred_x0, x_t, i)
    return Reverse(mean, var, log_var, pred_x0, pred_eps)
