"""Build BigGAN / BigGAN-deep G and D from ``config.model``, validating it first.

``config.model`` fields: name ('biggan' | 'biggan_deep'), resolution, g_ch, d_ch, z_dim,
num_classes, shared_dim (0: per-layer class embeddings), hier, g_attn_res, d_attn_res
(0: none), bn_eps, bn_momentum, sn_eps, bn_group_size (devices sharing BN statistics; 0: all),
dtype ('float32' | 'bfloat16': compute dtype; parameters stay float32).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from biggan import biggan, biggan_deep
from biggan.layers import BatchNormSettings

MODEL_NAMES = ("biggan", "biggan_deep")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _fail(field: str, value: Any, allowed: Any, hint: str = "") -> None:
    raise ValueError(f"config.model.{field}={value!r} is not supported; allowed: {allowed}."
                     + (f" {hint}" if hint else ""))


def num_z_chunks(cfg: ml_collections.ConfigDict) -> int:
    """How many equal chunks G splits z into (1 without the hierarchical latent)."""
    return len(biggan.G_STAGES[cfg.resolution]) + 1 if cfg.hier else 1


def d_attention_resolutions(cfg: ml_collections.ConfigDict) -> list[int]:
    """Resolutions at which this config's D can hold its non-local block."""
    if cfg.name == "biggan_deep":
        downsamples = [d for *_, d in biggan_deep.D_STAGES[cfg.resolution]]
    else:
        downsamples = [d for _, d in biggan.D_BLOCKS[cfg.resolution]]
    return sorted(set(biggan.d_stage_resolutions(cfg.resolution, downsamples)))


def supported_resolutions(name: str) -> list[int]:
    """Resolutions with both a G and a D layout for the architecture ``name``."""
    d_layouts = biggan_deep.D_STAGES if name == "biggan_deep" else biggan.D_BLOCKS
    return sorted(set(biggan.G_STAGES) & set(d_layouts))


def validate_model_config(cfg: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the field and the allowed values for any unsupported setting."""
    if cfg.name not in MODEL_NAMES:
        _fail("name", cfg.name, MODEL_NAMES)
    if cfg.resolution not in supported_resolutions(cfg.name):
        _fail("resolution", cfg.resolution, supported_resolutions(cfg.name),
              f"(for model.name={cfg.name!r})")
    if cfg.dtype not in DTYPES:
        _fail("dtype", cfg.dtype, sorted(DTYPES))
    if cfg.name == "biggan_deep" and (cfg.hier or not cfg.shared_dim):
        _fail("hier/shared_dim", (cfg.hier, cfg.shared_dim), "hier=False, shared_dim>0",
              "BigGAN-deep feeds the whole z with a shared embedding to every block.")
    if cfg.hier and not cfg.shared_dim:
        _fail("hier", cfg.hier, "False when shared_dim=0",
              "The hierarchical latent is concatenated with the shared embedding; set shared_dim.")
    chunks = num_z_chunks(cfg)
    if cfg.z_dim % chunks:
        _fail("z_dim", cfg.z_dim, f"a multiple of {chunks}",
              f"With hier=True at {cfg.resolution}px z is split into {chunks} equal chunks.")
    g_resolutions = (0, *biggan.g_stage_resolutions(cfg.resolution))
    if cfg.g_attn_res not in g_resolutions:
        _fail("g_attn_res", cfg.g_attn_res, g_resolutions, "0 means no non-local block.")
    d_resolutions = [0, *d_attention_resolutions(cfg)]
    if cfg.d_attn_res not in d_resolutions:
        _fail("d_attn_res", cfg.d_attn_res, d_resolutions, "0 means no non-local block.")
    for field in ("g_ch", "d_ch", "num_classes"):
        if cfg[field] < 1:
            _fail(field, cfg[field], "a positive integer")


def build_generator(cfg: ml_collections.ConfigDict, *, axis_name: str | None = None
                    ) -> nn.Module:
    """G for ``config.model``. ``axis_name``: the mesh axis whose devices share BatchNorm
    statistics (``gencore.sharding.BN_AXIS`` inside shard_map; None on one device)."""
    validate_model_config(cfg)
    bn = BatchNormSettings(cfg.bn_eps, cfg.bn_momentum, axis_name)
    common = dict(resolution=cfg.resolution, ch=cfg.g_ch, z_dim=cfg.z_dim,
                  num_classes=cfg.num_classes, shared_dim=cfg.shared_dim, attn_res=cfg.g_attn_res,
                  bn=bn, sn_eps=cfg.sn_eps, dtype=DTYPES[cfg.dtype])
    if cfg.name == "biggan_deep":
        return biggan_deep.DeepGenerator(**common)
    return biggan.Generator(hier=cfg.hier, **common)


def build_discriminator(cfg: ml_collections.ConfigDict, *, dropout_rate: float = 0.0
                        ) -> nn.Module:
    """D for ``config.model``; ``dropout_rate`` (``config.train.d_dropout``) drops D's pooled
    features in training mode."""
    validate_model_config(cfg)
    cls = biggan_deep.DeepDiscriminator if cfg.name == "biggan_deep" else biggan.Discriminator
    return cls(resolution=cfg.resolution, ch=cfg.d_ch, num_classes=cfg.num_classes,
               attn_res=cfg.d_attn_res, sn_eps=cfg.sn_eps, dtype=DTYPES[cfg.dtype],
               dropout_rate=dropout_rate)


def example_inputs(cfg: ml_collections.ConfigDict, batch: int = 2
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Zero z [B, z_dim], labels [B] and images [B, R, R, 3] for init / eval_shape."""
    r = cfg.resolution
    return (jnp.zeros((batch, cfg.z_dim)), jnp.zeros((batch,), jnp.int32),
            jnp.zeros((batch, r, r, 3)))


def init_variables(cfg: ml_collections.ConfigDict, rng: jax.Array, batch: int = 2
                   ) -> tuple[dict, dict]:
    """Initial G and D variables (collections 'params', 'spectral', G also 'batch_stats')."""
    z, y, x = example_inputs(cfg, batch)
    g_rng, d_rng = jax.random.split(rng)
    g_vars = build_generator(cfg).init(g_rng, z, y, train=False)
    d_vars = build_discriminator(cfg).init(d_rng, x, y, train=False)
    return g_vars, d_vars


def count_params(tree: Any) -> int:
    """Number of scalars in a pytree of arrays or ShapeDtypeStructs."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(tree))


def parameter_counts(cfg: ml_collections.ConfigDict) -> dict[str, int]:
    """Trainable parameter counts without allocating weights (jax.eval_shape).

    SN vectors and BN statistics are excluded; G's count includes its shared embedding, which
    is also reported alone (the convention of the reference counts).
    """
    validate_model_config(cfg)
    g_vars, d_vars = jax.eval_shape(lambda: init_variables(cfg, jax.random.key(0)))
    shared = g_vars["params"].get("shared_embedding", {})
    return {"G_params": count_params(g_vars["params"]), "D_params": count_params(d_vars["params"]),
            "G_shared_embedding_params": count_params(shared)}
