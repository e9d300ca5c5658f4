"""Training losses: L_simple, L_vlb, L_hybrid, and importance sampling of t.

DDPM Sec. 3.2-3.4 (L_simple, the discretized decoder), iDDPM Sec. 3.1 (L_hybrid =
L_simple + lambda L_vlb with a stop-gradient on the mean) and Sec. 3.3 (importance sampling).
All per-example terms are means over dimensions; the VLB terms are in bits per dimension.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import log_ndtr

from diffusion.reverse import (
    ModelFn,
    Parameterization,
    Reverse,
    p_mean_variance,
    split_output,
    v_target,
)
from diffusion.schedules import Schedule

LOSS_TYPES = ("simple", "vlb", "hybrid")

def mean_flat(x: jnp.ndarray) -> jnp.ndarray:
    """Mean over every axis but the first: [B, ...] -> [B]."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def normal_kl(mean1: jnp.ndarray, logvar1: jnp.ndarray, mean2: jnp.ndarray,
              logvar2: jnp.ndarray) -> jnp.ndarray:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
                  + jnp.square(mean1 - mean2) * jnp.exp(-logvar2))


def _log_ndtr_diff(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails."""
    flip = a > 0  # in the upper tail use Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    hi = log_ndtr(jnp.where(flip, -a, b))
    lo = log_ndtr(jnp.where(flip, -b, a))
    return hi + jnp.log1p(-jnp.exp(jnp.minimum(lo - hi, -1e-12)))


def discretized_gaussian_log_likelihood(x: jnp.ndarray, mean: jnp.ndarray,
                                        log_scale: jnp.ndarray) -> jnp.ndarray:
    """log P(x) of the DDPM decoder (Eq. 13), elementwise, in nats.

    x holds 8-bit data mapped to [-1, 1] (256 levels, bin width 2/255). The probability of a
    level is the N(mean, exp(log_scale)^2) mass of its bin; the end bins extend to -inf/+inf.
    This is the likelihood of uniformly dequantized data integrated over each bin, so it is a
    probability (<= 1) and bits/dim can never be negative.
    """
    inv_std = jnp.exp(-log_scale)
    upper = inv_std * (x - mean + 1.0 / 255.0)
    lower = inv_std * (x - mean - 1.0 / 255.0)
    return jnp.where(x < -0.999, log_ndtr(upper),
                     jnp.where(x > 0.999, log_ndtr(-lower), _log_ndtr_diff(lower, upper)))


def vb_terms_bpd(parameterization: Parameterization, s: Schedule, out: jnp.ndarray, x0: jnp.ndarray,
                 x_t: jnp.ndarray, i: jnp.ndarray,
                 clip_denoised: bool = False) -> tuple[jnp.ndarray, Reverse]:
    """L_{t-1} = KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for i > 0, L_0 = -log p(x_0|x_1) at i = 0.

    Returns bits/dim per example [B] (DDPM Eq. 5) and p(x_{t-1}|x_t).
    """
    true_mean, _, true_log_var = s.q_posterior(x0, x_t, i)
    p = p_mean_variance(parameterization, s, out, x_t, i, clip_denoised)
    kl = mean_flat(normal_kl(true_mean, true_log_var, p.mean, p.log_variance)) / math.log(2.0)
    nll = -mean_flat(discretized_gaussian_log_likelihood(x0, p.mean, 0.5 * p.log_variance))
    return jnp.where(i == 0, nll / math.log(2.0), kl), p


def mse_target(parameterization: Parameterization, s: Schedule, x0: jnp.ndarray, i: jnp.ndarray,
               noise: jnp.ndarray) -> jnp.ndarray:
    """What the mean channels regress onto: eps, x_0 or v."""
    if parameterization.mean_type == "eps":
        return noise
    if parameterization.mean_type == "x0":
        return x0
    return v_target(s, x0, i, noise)


def training_losses(
    model_fn: ModelFn, parameterization: Parameterization, s: Schedule, x0: jnp.ndarray,
    i: jnp.ndarray, noise: jnp.ndarray, loss_type: str = "simple", hybrid_lambda: float = 0.001,
) -> dict[str, jnp.ndarray]:
    """Per-example losses [B] at steps i [B] for data x0 [B, H, W, C] and noise eps.

    loss_type:
      'simple': || target - prediction ||^2 (DDPM Eq. 14), needs a fixed variance;
      'vlb':    L_{t-1} in bits/dim (unbiased for L_vlb / T with uniform t);
      'hybrid': L_simple + lambda * T * L_{t-1} with the mean frozen inside L_{t-1}
                (iDDPM Eq. 16), needs the learned variance.
    Returns {'loss', 'mse', 'vb'} (terms not used are zeros).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if loss_type == "simple" and parameterization.learn_sigma:
        raise ValueError("L_simple does not train a learned variance: use 'hybrid' or 'vlb'")
    if loss_type == "hybrid" and not parameterization.learn_sigma:
        raise ValueError("L_hybrid needs the learned variance (var_type='learned_range')")
    x_t = s.q_sample(x0, i, noise)
    out = model_fn(x_t, s.model_time(i))
    zeros = jnp.zeros(x0.shape[:1], jnp.float32)
    if loss_type == "vlb":
        vb, _ = vb_terms_bpd(parameterization, s, out, x0, x_t, i)
        return {"loss": vb, "mse": zeros, "vb": vb}
    mean_out, var_out = split_output(parameterization, out)
    mse = mean_flat(jnp.square(mse_target(parameterization, s, x0, i, noise) - mean_out))
    if loss_type == "simple":
        return {"loss": mse, "mse": mse, "vb": zeros}
    frozen = jnp.concatenate([jax.lax.stop_gradient(mean_out), var_out], axis=-1)
    vb = vb_terms_bpd(parameterization, s, frozen, x0, x_t, i)[0] * (hybrid_lambda * s.num_steps)
    return {"loss": mse + vb, "mse": mse, "vb": vb}


@struct.dataclass
class LossHistory:
    """Recent L_t values for importance sampling (iDDPM Sec. 3.3); a pytree that checkpoints.

    losses [T, K]: the last K losses seen at each t (oldest first); counts [T]: how many
    were seen, capped at K.
    """

    losses: jnp.ndarray
    counts: jnp.ndarray


def init_loss_history(num_steps: int, history: int = 10) -> LossHistory:
    """Empty history keeping `history` losses for each of `num_steps` timesteps."""
    return LossHistory(jnp.zeros((num_steps, history), jnp.float32),
                       jnp.zeros((num_steps,), jnp.int32))


def timestep_probs(state: LossHistory, uniform_prob: float = 0.001) -> jnp.ndarray:
    """p_t proportional to sqrt(E[L_t^2]) once every t has K losses, uniform before; [T]."""
    num_steps = state.losses.shape[0]
    w = jnp.sqrt(jnp.mean(jnp.square(state.losses), axis=1))
    p = w / jnp.sum(w)
    p = p * (1.0 - uniform_prob) + uniform_prob / num_steps
    warm = jnp.all(state.counts >= state.losses.shape[1])
    return jnp.where(warm, p, jnp.full_like(p, 1.0 / num_steps))


def sample_timesteps(key: jax.Array, state: LossHistory,
                     batch_size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Draws steps i [B] from p_t and returns them with weights 1 / (T p_i) [B] (unbiased)."""
    p = timestep_probs(state)
    i = jax.random.choice(key, p.shape[0], (batch_size,), p=p)
    return i.astype(jnp.int32), 1.0 / (p.shape[0] * p[i])


def update_loss_history(state: LossHistory, i: jnp.ndarray, losses: jnp.ndarray) -> LossHistory:
    """Appends losses [B] (gathered over all devices) at steps i [B], in batch order."""
    losses = jax.lax.stop_gradient(losses).astype(jnp.float32)

    def push(b: int, st: LossHistory) -> LossHistory:
        row = jnp.concatenate([st.losses[i[b], 1:], losses[b][None]])
        count = jnp.minimum(st.counts[i[b]] + 1, st.losses.shape[1])
        return LossHistory(st.losses.at[i[b]].set(row), st.counts.at[i[b]].set(count))

    return jax.lax.fori_loop(0, i.shape[0], push, state)
