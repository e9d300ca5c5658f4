"""Negative log-likelihood in bits/dim: the full variational bound (DDPM Eq. 5, iDDPM Sec. 2).

L = L_T + sum_{t>1} L_{t-1} + L_0: the prior term KL(q(x_T|x_0) || N(0, I)), every KL term, and
the discretized Gaussian decoder -log p(x_0|x_1). Data must be 8-bit images mapped to
[-1, 1] (x / 127.5 - 1): the decoder gives each of the 256 levels the probability mass of its
bin, which is the uniform-dequantization likelihood (density integrated over the bin), so no
noise is added to the data and bits/dim are a proper (non-negative) discrete codelength.
bits/dim = nats / (D ln 2).

Clipping: as in both papers' reference code (DDPM's and improved-diffusion's bits/dim loops,
whose per-step terms default to clipping), the evaluation clips the predicted x_0 to [-1, 1]
before forming p's mean in every term (``clip_denoised=True``); training's L_vlb does not clip.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from diffusion.losses import mean_flat, normal_kl, vb_terms_bpd
from diffusion.reverse import ModelFn, Parameterization
from diffusion.schedules import Schedule


def prior_bpd(s: Schedule, x0: jnp.ndarray) -> jnp.ndarray:
    """L_T = KL(q(x_T | x_0) || N(0, I)) in bits/dim [B]; ~0 for a good schedule."""
    last = jnp.full((x0.shape[0],), s.num_steps - 1, jnp.int32)
    mean, _, log_var = s.q_mean_variance(x0, last)
    return mean_flat(normal_kl(mean, log_var, 0.0, 0.0)) / math.log(2.0)


def bits_per_dim(model_fn: ModelFn, parameterization: Parameterization, s: Schedule,
                 x0: jnp.ndarray, key: jax.Array, clip_denoised: bool = True
                 ) -> dict[str, jnp.ndarray]:
    """Full VLB of x0 [B, H, W, C] with one x_t sample per step, all steps in one lax.scan;
    ``clip_denoised``: clip the predicted x_0 to [-1, 1] (the papers' evaluation convention).

    Returns {'total': [B], 'prior': [B], 'vb': [B, N] (L_{t-1} per step i, bits/dim),
    'mse': [B, N] (squared error of the predicted eps per step)}. The mean of 'total' over a
    dataset is its NLL.
    """
    batch = x0.shape[0]

    def term(_, i: jnp.ndarray) -> tuple[None, tuple[jnp.ndarray, jnp.ndarray]]:
        iv = jnp.full((batch,), i, jnp.int32)
        noise = jax.random.normal(jax.random.fold_in(key, i), x0.shape, jnp.float32)
        x_t = s.q_sample(x0, iv, noise)
        out = model_fn(x_t, s.model_time(iv))
        vb, p = vb_terms_bpd(parameterization, s, out, x0, x_t, iv, clip_denoised)
        return None, (vb, mean_flat(jnp.square(p.pred_eps - noise)))

    _, (vb, mse) = jax.lax.scan(term, None, jnp.arange(s.num_steps, dtype=jnp.int32))
    prior = prior_bpd(s, x0)
    return {"total": jnp.sum(vb, axis=0) + prior, "prior": prior, "vb": vb.T, "mse": mse.T}
