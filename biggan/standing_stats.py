"""Standing statistics (Appendix C.1) and sampling with them.

G runs forward in training mode for ``passes`` passes on fresh latents drawn at the sampling
truncation; each pass's BatchNorm means and variances are reduced over every device (Flax
BatchNorm with ``axis_name=BN_AXIS`` inside ``jax.shard_map`` over a mesh whose BN axis spans
all devices), then averaged over passes and stored as 'batch_stats'. Sampling with
``train=False`` then uses these fixed statistics, so an image depends only on its own (z, y):
not on the batch it is generated in, nor on the device count.

Each pass's statistics are read from a copy of G whose BN momentum is 0, so that the
'batch_stats' a training-mode pass returns are exactly that pass's (Flax convention:
running = momentum * running + (1 - momentum) * batch). Spectral-norm vectors are not updated.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from biggan import model as biggan_model
from biggan.latents import sample_latents
from biggan.layers import SPECTRAL
from gencore.sharding import BATCH_SPEC, BN_AXIS, GROUP_AXIS, check_batch_divisible, make_mesh

BATCH_STATS = "batch_stats"
Sampler = Callable[[Any, Any, jax.Array, jax.Array], jax.Array]
"""(params, g_state, z [B, z_dim], y [B]) -> images [B, R, R, 3] in [-1, 1]."""


StatsFn = Callable[[Any, Any, jax.Array, float | None], Any]
"""(params, g_state, key, truncation) -> standing 'batch_stats'."""


def make_standing_stats_fn(model_cfg: ml_collections.ConfigDict, passes: int, batch_size: int,
                           mesh: Mesh | None = None, latent: str = "normal") -> StatsFn:
    """A jitted function giving G's 'batch_stats' averaged over ``passes`` training-mode passes
    of ``batch_size`` (global) latents drawn from ``latent`` at the truncation (Appendix C.1).

    params: G's weights (the EMA weights for sampling); g_state: {'batch_stats', 'spectral'}.
    mesh: devices to run on (default: all); statistics are reduced over all of them. The
    truncation is a traced argument: one compile serves a whole sweep (None compiles apart).
    """
    mesh = make_mesh(mesh.devices.flatten() if mesh is not None else None)
    check_batch_divisible(batch_size, mesh.devices.size, "config.eval.batch_size")
    pass_cfg = model_cfg.copy_and_resolve_references()
    with pass_cfg.unlocked():
        pass_cfg.bn_momentum = 0.0
    G = biggan_model.build_generator(pass_cfg, axis_name=BN_AXIS)

    def one_pass(params, g_state, z, y):
        _, updated = G.apply({"params": params, **g_state}, z, y, train=True,
                             mutable=[BATCH_STATS, SPECTRAL])
        return jax.lax.pmean(updated[BATCH_STATS], GROUP_AXIS)   # one group: exact

    sharded_pass = jax.shard_map(one_pass, mesh=mesh,
                                 in_specs=(PartitionSpec(), PartitionSpec(), BATCH_SPEC,
                                           BATCH_SPEC),
                                 out_specs=PartitionSpec())
    batch_sharding = NamedSharding(mesh, BATCH_SPEC)

    @jax.jit
    def run(params, g_state, key, truncation):
        def body(i, total):
            z, y = sample_latents(jax.random.fold_in(key, i), batch_size, model_cfg.z_dim,
                                  model_cfg.num_classes, truncation, latent)
            z = jax.lax.with_sharding_constraint(z, batch_sharding)
            y = jax.lax.with_sharding_constraint(y, batch_sharding)
            stats = sharded_pass(params, g_state, z, y)
            return jax.tree_util.tree_map(jnp.add, total, stats)

        zeros = jax.tree_util.tree_map(jnp.zeros_like, g_state[BATCH_STATS])
        total = jax.lax.fori_loop(0, passes, body, zeros)
        return jax.tree_util.tree_map(lambda t: t / passes, total)

    return run


def standing_stats(model_cfg: ml_collections.ConfigDict, params: Any, g_state: Any,
                   key: jax.Array, truncation: float | None, passes: int, batch_size: int,
                   mesh: Mesh | None = None, latent: str = "normal") -> Any:
    """Standing 'batch_stats' of G at ``truncation`` (``make_standing_stats_fn``, one call)."""
    run = make_standing_stats_fn(model_cfg, passes, batch_size, mesh, latent)
    return run(params, g_state, key, truncation)


def make_sampler(model_cfg: ml_collections.ConfigDict) -> Sampler:
    """Jitted G in inference mode (stored BN statistics, no state update); the batch may be
    sharded over any devices, each image depends only on its own (z, y)."""
    G = biggan_model.build_generator(model_cfg)

    @jax.jit
    def sample(params, g_state, z, y):
        return G.apply({"params": params, **g_state}, z, y, train=False)

    return sample


def with_standing_stats(g_state: Any, stats: Any) -> Any:
    """g_state with its 'batch_stats' replaced by standing statistics."""
    return {**g_state, BATCH_STATS: stats}
