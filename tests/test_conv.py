"""gencore.conv: the CPU convolutions equal lax.conv_general_dilated (values and gradients), and
programs lowered for other platforms keep XLA's convolution."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from biggan.layers import SameConv, orthogonal_init
from gencore.conv import conv_same

RTOL = 2e-5
"""Largest |ours - XLA| allowed, relative to the largest |XLA| entry (float32 rounding)."""


def reference(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def assert_close(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= RTOL * np.abs(want).max()


def inputs(kernel, size, cin=5, cout=7):
    kx, kw, ky = jax.random.split(jax.random.key(0), 3)
    return (jax.random.normal(kx, (2, size, size, cin)),
            jax.random.normal(kw, (kernel, kernel, cin, cout)),
            jax.random.normal(ky, (2, size, size, cout)))


@pytest.mark.parametrize("kernel, size", [(3, 4), (3, 15), (1, 8), (5, 8)])
def test_conv_same_values_and_gradients_equal_xla(kernel, size):
    x, w, dy = inputs(kernel, size)

    def vjp(f):
        out, pullback = jax.vjp(f, x, w)
        return out, *pullback(dy)

    got = jax.jit(lambda: vjp(conv_same))()
    want = jax.jit(lambda: vjp(reference))()
    for g, r in zip(got, want, strict=True):
        assert_close(g, r)


def lowered_text(platform):
    x, w, dy = inputs(3, 32)
    grads = jax.jit(lambda x, w: jax.vjp(conv_same, x, w)[1](dy))
    return grads.trace(x, w).lower(lowering_platforms=(platform,)).as_text()


def test_platforms_other_than_cpu_keep_xla_convolutions():
    tpu, cpu = lowered_text("tpu"), lowered_text("cpu")
    assert "stablehlo.convolution" in tpu and "dot_general" not in tpu
    assert "dot_general" in cpu     # the kernel gradient's GEMMs


def test_same_conv_has_nn_conv_variables_and_values():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 5))
    ours = SameConv(6, 3, name="conv")
    theirs = nn.Conv(6, (3, 3), padding="SAME", kernel_init=orthogonal_init, name="conv")
    ours_vars = ours.init(jax.random.key(1), x)
    theirs_vars = theirs.init(jax.random.key(1), x)
    jax.tree.map(np.testing.assert_array_equal, ours_vars, theirs_vars)
    ours_vars = jax.tree.map(lambda v: v + 0.1, ours_vars)          # a non-zero bias
    assert_close(ours.apply(ours_vars, x), theirs.apply(ours_vars, x))
    kept = SameConv(6, 3, kept_features=2).apply(ours_vars, x)
    assert kept.shape == (2, 8, 8, 2)
    assert_close(kept, theirs.apply(ours_vars, x)[..., :2])
    bf16 = SameConv(6, 3, dtype=jnp.bfloat16).apply(ours_vars, x)
    assert bf16.dtype == jnp.bfloat16
