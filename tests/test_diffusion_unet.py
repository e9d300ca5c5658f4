"""U-Net: exact paper parameter counts (eval_shape only) and tiny-model behaviour."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from diffusion.layers import Dropout, GroupNorm, timestep_embedding
from diffusion.unet import UNet, unet_from_config
from gencore.config_util import load_config


def count_params(model: UNet, resolution: int) -> int:
    x = jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32)
    t = jax.ShapeDtypeStruct((1,), jnp.float32)
    y = jax.ShapeDtypeStruct((1,), jnp.int32) if model.num_classes else None
    shapes = jax.eval_shape(lambda k, x, t, y: model.init(k, x, t, y), jax.random.key(0), x, t, y)
    return sum(a.size for a in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("config, resolution, count", [
    ("ddpm_cifar10.py", 32, 35_746_307),
    ("ddpm_lsun256.py:church", 256, 113_673_219),
    ("iddpm_cifar10.py:cosine_hybrid", 32, 52_546_438),
    ("iddpm_imagenet64.py:hybrid", 64, 121_063_942),
    ("iddpm_imagenet64.py:class_cond", 64, 273_049_350),
])
def test_paper_parameter_counts(config: str, resolution: int, count: int) -> None:
    model = load_config(f"configs/diffusion/{config}").model
    assert count_params(unet_from_config(model), resolution) == count


def test_null_class_adds_one_embedding_row() -> None:
    cfg = load_config("configs/diffusion/iddpm_imagenet64.py:class_cond").model
    cfg.null_class = True
    assert count_params(unet_from_config(cfg), 64) == 273_049_350 + 4 * 192


TINY = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.5)


def perturbed(variables: dict, key: jax.Array) -> dict:
    """Random weights shaped like `variables` (arrays or shape structs): the zero-initialised
    output layers would hide everything at init."""
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [0.1 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves, strict=True)])


def test_tiny_ddpm_unet_shapes_and_conditioning() -> None:
    model = UNet(**TINY)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    t = jnp.array([3.0, 700.0])
    variables = jax.jit(model.init)(jax.random.key(1, impl="rbg"), x, t)  # rbg: fast compile
    apply = jax.jit(model.apply, static_argnames="train")
    out0 = apply(variables, x, t)
    assert out0.shape == (2, 8, 8, 3) and out0.dtype == jnp.float32
    assert float(jnp.abs(out0).max()) == 0.0  # output conv initialised to zero
    variables = perturbed(variables, jax.random.key(2))
    out = apply(variables, x, t)
    np.testing.assert_allclose(out, apply(variables, x, t), atol=0)  # eval: deterministic
    assert not np.allclose(out, apply(variables, x, t + 50.0))  # depends on t
    d1 = apply(variables, x, t, train=True, rngs={"dropout": jax.random.key(3)})
    d2 = apply(variables, x, t, train=True, rngs={"dropout": jax.random.key(4)})
    assert not np.allclose(d1, d2)  # dropout active in training


def test_tiny_iddpm_unet_learned_sigma_and_labels() -> None:
    cfg = ml_collections.ConfigDict(dict(TINY, num_heads=4, learn_sigma=True,
                                         scale_shift_norm=True, num_classes=5, null_class=True))
    model = unet_from_config(cfg)
    assert model.ch_mult == (1, 2) and model.num_heads == 4
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    t, y = jnp.array([1.0, 999.0]), jnp.array([0, 5])  # 5 = the null class
    variables = perturbed(jax.eval_shape(model.init, jax.random.key(1), x, t, y),
                          jax.random.key(2))
    apply = jax.jit(model.apply)
    out = apply(variables, x, t, y)
    assert out.shape == (2, 8, 8, 6)
    assert not np.allclose(out, apply(variables, x, t, jnp.array([1, 5])), atol=1e-6)
    with pytest.raises(ValueError):
        jax.eval_shape(model.apply, variables, x, t)


def test_timestep_embedding_is_sinusoidal() -> None:
    emb = timestep_embedding(jnp.array([0.0, 10.0]), 8)
    assert emb.shape == (2, 8)
    np.testing.assert_allclose(emb[0], [0, 0, 0, 0, 1, 1, 1, 1], atol=1e-7)
    freqs = np.exp(-np.log(10000.0) / 3 * np.arange(4))
    np.testing.assert_allclose(emb[1, :4], np.sin(10 * freqs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [64, 256])
def test_group_norm_equals_flax_group_norm(channels: int) -> None:
    """The per-channel-then-per-group statistics give flax.linen.GroupNorm's output and
    gradients (input, scale, bias), on inputs with a mean far from zero."""
    rng = np.random.default_rng(channels)
    x = jnp.asarray(rng.normal(3.0, 2.0, (2, 8, 8, channels)), jnp.float32)
    params = {"scale": jnp.asarray(rng.normal(1.0, 0.3, channels), jnp.float32),
              "bias": jnp.asarray(rng.normal(0.0, 0.3, channels), jnp.float32)}
    cotangent = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    ours, theirs = GroupNorm(32, 1e-6), nn.GroupNorm(num_groups=32, epsilon=1e-6)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)["params"]) == \
        jax.tree.map(jnp.shape, theirs.init(jax.random.key(0), x)["params"])

    def value_and_grads(module):
        def loss(params, x):
            return jnp.sum(module.apply({"params": params}, x) * cotangent)
        return jax.value_and_grad(loss, argnums=(0, 1))(params, x), module.apply(
            {"params": params}, x)

    (_, grads_ours), out_ours = value_and_grads(ours)
    (_, grads_theirs), out_theirs = value_and_grads(theirs)
    np.testing.assert_allclose(out_ours, out_theirs, atol=2e-5, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads_ours), jax.tree.leaves(grads_theirs), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_drops_at_its_rate_and_scales_the_rest(rate: float) -> None:
    x = jnp.ones((4, 16, 16, 64))                 # 65,536 elements: binomial sd 0.2% at most

    def drop(key, x=x, deterministic=False):
        return Dropout(rate).apply({}, x, deterministic=deterministic, rngs={"dropout": key})

    out = np.asarray(drop(jax.random.key(0)))
    kept = out != 0
    assert abs(kept.mean() - (1 - rate)) < 0.01
    np.testing.assert_allclose(out[kept], 1 / (1 - rate), rtol=1e-6)
    np.testing.assert_array_equal(drop(jax.random.key(0)), out)
    assert (np.asarray(drop(jax.random.key(1))) != out).any()
    np.testing.assert_array_equal(drop(jax.random.key(0), deterministic=True), x)
    odd = drop(jax.random.key(0), jnp.ones((3, 5, 7, 1)))        # an odd element count
    assert odd.shape == (3, 5, 7, 1) and 0 < (np.asarray(odd) != 0).mean() < 1
