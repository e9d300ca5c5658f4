"""gencore.conv: the convolution, and the XLA:CPU options the train steps compile with, which
change how XLA computes a program (the libraries it hands operations to), not what."""

import re
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biggan.layers import SameConv, orthogonal_init
from gencore import sharding
from gencore.conv import (
    CPU_COMPILER_OPTIONS,
    conv_general_dilated,
    conv_same,
    cpu_compiler_options,
    unfused,
)

RTOL = 2e-5
"""Largest |a - b| allowed, relative to the largest |b| entry (float32 rounding)."""


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
def test_cpu_options_keep_values_and_gradients(kernel, size):
    """A conv, GroupNorm-like reductions and SiLU, forward and both gradients, compiled with the
    project's CPU options equal XLA's default compile."""
    x, w, dy = inputs(kernel, size)

    def program(x, w, dy):
        def f(x, w):
            y = conv_same(x, w)
            y = (y - y.mean((1, 2), keepdims=True)) / jnp.sqrt(y.var((1, 2), keepdims=True) + 1)
            return jax.nn.silu(y)
        out, pullback = jax.vjp(f, x, w)
        return out, *pullback(dy)

    lowered = jax.jit(program).lower(x, w, dy)
    got = lowered.compile(CPU_COMPILER_OPTIONS)(x, w, dy)
    want = lowered.compile()(x, w, dy)
    for g, r in zip(got, want, strict=True):
        assert_close(g, r)


def convolutions_in_library_fusions(hlo_text: str) -> tuple[int, int]:
    """(convolutions the program runs as XLA's own instructions, convolutions inside YNNPACK
    fusions) of a compiled module's text."""
    bodies = dict(re.findall(r"\n%([\w.\-]+) [^\n]*\{\n(.*?)\n\}", hlo_text, re.S))
    entry = hlo_text[hlo_text.index("ENTRY"):]
    in_library = 0
    for line in entry.splitlines():
        called = re.search(r"calls=%([\w.\-]+)", line)
        if "__ynn_fusion" in line and called:
            in_library += bodies[called.group(1)].count(" convolution(")
    return len(re.findall(r" convolution\(", entry)), in_library


@pytest.mark.parametrize("strides", [1, 2])
def test_convolutions_stay_out_of_cpu_library_fusions(strides):
    """With a bias and SiLU around it, the convolution (`conv_same`, or the stride-2
    `conv_general_dilated` the U-Net's downsampling uses) and both its gradients run as XLA's
    own convolutions on the CPU (a plain lax convolution is pulled into YNNPACK fusions), with
    the values of the plain convolution (sizes at which XLA fuses the plain one)."""
    size, channels = (8, 32) if strides == 1 else (16, 64)
    x, w, _ = inputs(3, size, channels, channels)
    dy = jax.random.normal(jax.random.key(1), (2, size // strides, size // strides, channels))
    args = ((strides, strides), ((1, 1), (1, 1)))
    numbers = {"dimension_numbers": ("NHWC", "HWIO", "NHWC")}

    def program(conv):
        def f(x, w):
            return jax.nn.silu(conv(x, w) + 0.5)
        def run(x, w, dy):
            out, pullback = jax.vjp(f, x, w)
            return out, *pullback(dy)
        return jax.jit(run).lower(x, w, dy).compile(CPU_COMPILER_OPTIONS)

    ours = program(conv_same if strides == 1 else
                   lambda x, w: conv_general_dilated(x, w, *args, **numbers))
    reference = program(lambda x, w: jax.lax.conv_general_dilated(x, w, *args, **numbers))
    assert convolutions_in_library_fusions(ours.as_text()) == (3, 0)
    assert convolutions_in_library_fusions(reference.as_text())[1] > 0
    for g, r in zip(ours(x, w, dy), reference(x, w, dy), strict=True):
        assert_close(g, r)


def test_unfused_is_the_identity_and_cpu_only():
    x = jax.random.normal(jax.random.key(0), (3, 4))
    np.testing.assert_array_equal(jax.jit(unfused)(x), x)
    for dtype in (jnp.float32, jnp.bfloat16):
        traced = jax.jit(unfused).trace(x.astype(dtype))
        assert "reduce_precision" in traced.lower(lowering_platforms=("cpu",)).as_text()
        assert "reduce_precision" not in traced.lower(lowering_platforms=("tpu",)).as_text()


def test_options_apply_to_cpu_meshes_only():
    assert cpu_compiler_options(sharding.make_mesh()) == CPU_COMPILER_OPTIONS
    tpu = types.SimpleNamespace(devices=np.array([types.SimpleNamespace(platform="tpu")]))
    assert cpu_compiler_options(tpu) is None


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
