"""Classifier-free guidance (Ho & Salimans 2021) for class-conditional U-Nets.

Training drops labels to the reserved null class (`UNet(null_class=True)`, index
`num_classes`) with probability p; sampling mixes the conditional and unconditional outputs:
out = out_uncond + scale * (out_cond - out_uncond) on the mean channels (scale 1: plain
conditional, 0: unconditional, > 1: guided). It is the class-label analogue of Imagen's
text guidance.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffusion.reverse import ModelFn

#: apply_fn(x_t [B, H, W, C], model time [B], labels [B]) -> network output.
ConditionalFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]


def drop_labels(key: jax.Array, y: jnp.ndarray, drop_prob: float, null_label: int) -> jnp.ndarray:
    """Replaces each label y [B] by `null_label` with probability `drop_prob`."""
    drop = jax.random.bernoulli(key, drop_prob, y.shape)
    return jnp.where(drop, null_label, y).astype(y.dtype)


def guided_model_fn(apply_fn: ConditionalFn, y: jnp.ndarray, scale: float,
                    null_label: int) -> ModelFn:
    """A `model_fn` for the samplers that guides towards labels y [B] with `scale`.

    Runs the conditional and unconditional passes as one batch of 2B. Mean channels (the
    first C; eps, x0 and v are all affine in the output) are mixed; learned-variance
    channels come from the conditional pass.
    """

    def model_fn(x: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
        both = apply_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                        jnp.concatenate([y, jnp.full_like(y, null_label)]))
        cond, uncond = jnp.split(both, 2)
        c = x.shape[-1]
        mean = uncond[..., :c] + scale * (cond[..., :c] - uncond[..., :c])
        return jnp.concatenate([mean, cond[..., c:]], axis=-1)

    return model_fn
