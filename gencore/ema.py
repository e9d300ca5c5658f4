"""The exponential moving average of the weights that both families sample from (BigGAN Sec. 3
and App. C; DDPM App. B)."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections


def ema_update(ema_params: Any, params: Any, step: jax.Array,
               train: ml_collections.ConfigDict) -> Any:
    """decay * ema + (1 - decay) * params with decay = ``train.ema_decay`` from step
    ``train.ema_start`` on; before it, a copy of ``params``."""
    decay = jnp.where(step >= train.ema_start, train.ema_decay, 0.0)
    return jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
