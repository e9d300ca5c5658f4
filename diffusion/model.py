"""The configured diffusion model: U-Net, parameterization, schedules and sampler from a config.

Shared by training, sampling, evaluation and the summary so that every job reads
``config.model`` and ``config.diffusion`` the same way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from diffusion.guidance import guided_model_fn
from diffusion.reverse import ModelFn, Parameterization, sample
from diffusion.schedules import Schedule, get_betas, make_schedule, respace, spaced_timesteps
from diffusion.unet import UNet, unet_from_config


def build_unet(config: ml_collections.ConfigDict) -> UNet:
    """The U-Net of ``config.model`` in its computation dtype."""
    return unet_from_config(config.model, dtype=jnp.dtype(config.model.dtype))


def parameterization(config: ml_collections.ConfigDict) -> Parameterization:
    """What the network predicts (``config.diffusion.mean_type`` / ``var_type``)."""
    return Parameterization(config.diffusion.mean_type, config.diffusion.var_type)


def train_schedule(config: ml_collections.ConfigDict) -> Schedule:
    """The full T-step schedule the model trains on."""
    return make_schedule(config.diffusion.schedule, config.diffusion.num_steps)


def sampling_schedule(config: ml_collections.ConfigDict, steps: int) -> Schedule:
    """The schedule respaced to ``steps`` evenly spaced timesteps (iDDPM Sec. 4)."""
    d = config.diffusion
    return respace(get_betas(d.schedule, d.num_steps), spaced_timesteps(d.num_steps, steps))


def null_label(config: ml_collections.ConfigDict) -> int:
    """Index of the 'no label' class of classifier-free guidance."""
    return config.model.num_classes


def init_params(config: ml_collections.ConfigDict, key: jax.Array) -> Any:
    """Initial U-Net parameters for ``config`` (batch of one)."""
    res = config.model.resolution
    x = jnp.zeros((1, res, res, 3), jnp.float32)
    y = jnp.zeros((1,), jnp.int32) if config.model.num_classes else None
    return build_unet(config).init(key, x, jnp.zeros((1,)), y)["params"]


def generate(config: ml_collections.ConfigDict, params: Any, keys: jax.Array,
             labels: jnp.ndarray | None = None, *, method: str = "ddim", steps: int = 50,
             guidance: float = 1.0, eta: float = 0.0) -> jnp.ndarray:
    """One sample per key of ``keys`` [N]: [N, R, R, 3] in [-1, 1] with ``steps`` respaced steps
    of ``method``; sample b depends only on keys[b] (and labels[b]).

    Class-conditional models need ``labels`` [N]; ``guidance`` != 1 uses classifier-free
    guidance (needs ``model.null_class``). Call inside ``jax.jit``.
    """
    unet, res = build_unet(config), config.model.resolution

    def apply(x: jnp.ndarray, t: jnp.ndarray, y: jnp.ndarray | None) -> jnp.ndarray:
        return unet.apply({"params": params}, x, t, y)

    model_fn: ModelFn
    if not config.model.num_classes:
        model_fn = lambda x, t: apply(x, t, None)   # noqa: E731
    elif guidance == 1.0:
        model_fn = lambda x, t: apply(x, t, labels)   # noqa: E731
    else:
        if not config.model.null_class:
            raise ValueError("guidance != 1 needs a model trained with model.null_class=True")
        model_fn = guided_model_fn(apply, labels, guidance, null_label(config))
    return sample(model_fn, parameterization(config), sampling_schedule(config, steps), keys,
                  (len(keys), res, res, 3), method=method, eta=eta)


def parameter_count(config: ml_collections.ConfigDict) -> int:
    """Trainable U-Net parameters of ``config`` (shapes only, via ``jax.eval_shape``)."""
    shapes = jax.eval_shape(lambda k: init_params(config, k), jax.random.key(0))
    return sum(a.size for a in jax.tree_util.tree_leaves(shapes))
