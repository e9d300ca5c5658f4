"""Latent sampling for G: the truncation trick by resampling (Sec. 3.1).

z ~ N(0, I), with every entry whose magnitude exceeds ``truncation`` redrawn until none does
(not scaled or clipped): the result follows the normal distribution truncated to
[-truncation, truncation].
"""

import jax
import jax.numpy as jnp


def truncated_normal_by_resampling(key: jax.Array, shape: tuple[int, ...],
                                   truncation: float | jax.Array) -> jax.Array:
    """N(0, 1) samples of ``shape`` with |z| > truncation redrawn until |z| <= truncation."""

    def redraw(carry):
        z, key = carry
        key, sub = jax.random.split(key)
        fresh = jax.random.normal(sub, shape)
        return jnp.where(jnp.abs(z) > truncation, fresh, z), key

    key, sub = jax.random.split(key)
    z, _ = jax.lax.while_loop(lambda c: jnp.any(jnp.abs(c[0]) > truncation), redraw,
                              (jax.random.normal(sub, shape), key))
    return z


def sample_latents(key: jax.Array, batch: int, z_dim: int, num_classes: int,
                   truncation: float | None = None) -> tuple[jax.Array, jax.Array]:
    """z [batch, z_dim] (truncated by resampling if ``truncation``) and uniform labels [batch]."""
    z_key, y_key = jax.random.split(key)
    if truncation is None:
        z = jax.random.normal(z_key, (batch, z_dim))
    else:
        z = truncated_normal_by_resampling(z_key, (batch, z_dim), truncation)
    return z, jax.random.randint(y_key, (batch,), 0, num_classes)
