"""Building blocks of the DDPM / iDDPM U-Nets (DDPM App. B, iDDPM Sec. 3 and App. A).

All tensors are NHWC. `temb` is the timestep (+ class) embedding [B, 4 ch].
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gencore.conv import conv_general_dilated, conv_same

#: DDPM's default initialiser (TF variance_scaling(1, fan_avg, uniform)).
default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def timestep_embedding(t: jnp.ndarray, dim: int) -> jnp.ndarray:
    """Transformer sinusoidal embedding of (float) timesteps t [B] -> [B, dim] (DDPM App. B)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) / (half - 1) * jnp.arange(half, dtype=jnp.float32))
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class GroupNorm(nn.Module):
    """GroupNorm (Wu & He 2018): x [B, H, W, C] normalised over H, W and the channels of each
    of ``num_groups`` groups, then scaled and shifted per channel (params 'scale' [C], 'bias'
    [C], as `flax.linen.GroupNorm` names and initialises them). 32 groups and eps 1e-6 by
    default, as in both papers.

    Statistics in float32 as Var = E[x^2] - E[x]^2 (flax's default), summed per channel over
    H, W first and then over each group's channels: the same sums in another order, and on
    XLA:CPU several times faster than one reduction over the strided group axes.
    """

    num_groups: int = 32
    epsilon: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        b, _, _, c = x.shape
        if c % self.num_groups:
            raise ValueError(f"{c} channels do not split into {self.num_groups} groups")
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        x = x.astype(jnp.float32)
        per_group = c // self.num_groups

        def group_mean(per_channel: jnp.ndarray) -> jnp.ndarray:   # [B, C] -> [B, C]
            means = per_channel.reshape(b, self.num_groups, per_group).mean(axis=-1)
            return jnp.repeat(means, per_group, axis=1)

        mean = group_mean(jnp.mean(x, axis=(1, 2)))
        var = jnp.maximum(group_mean(jnp.mean(jnp.square(x), axis=(1, 2))) - jnp.square(mean),
                          0.0)
        gain = scale * lax.rsqrt(var + self.epsilon)                  # [B, C]
        offset = bias - mean * gain
        return (x * gain[:, None, None, :] + offset[:, None, None, :]).astype(self.dtype)


class Dropout(nn.Module):
    """Inverted dropout (DDPM App. B): each element of x is zeroed with probability ``rate``
    (rounded to a multiple of 2^-16) and the rest scaled by 1 / (1 - rate); random numbers
    from the 'dropout' stream.

    Each 32-bit random word decides two elements (its two 16-bit halves against
    round(rate * 2^16)): half the threefry work of `flax.linen.Dropout`, which draws a
    float32 uniform per element.
    """

    rate: float

    @nn.compact
    def __call__(self, x: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        if deterministic or self.rate == 0.0:
            return x
        if self.rate >= 1.0:
            return jnp.zeros_like(x)
        size = x.size
        words = jax.random.bits(self.make_rng("dropout"), ((size + 1) // 2,), jnp.uint32)
        halves = jnp.stack([words >> 16, words & 0xFFFF], axis=-1).reshape(-1)[:size]
        keep = halves.reshape(x.shape) >= round(self.rate * 65536)
        return jnp.where(keep, x / (1.0 - self.rate), 0.0).astype(x.dtype)


class Conv3x3(nn.Module):
    """3x3 'same' convolution with bias (params 'kernel' [3, 3, Cin, Cout], 'bias').

    `zero` initialises the kernel to zero (last layer of a residual branch). Computed by
    `gencore.conv.conv_same` (XLA's convolution).
    """

    features: int
    zero: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        init = nn.initializers.zeros if self.zero else default_init
        kernel = self.param("kernel", init, (3, 3, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        return conv_same(x, kernel) + bias.astype(self.dtype)


class ResBlock(nn.Module):
    """Residual block with timestep conditioning.

    Plain (DDPM): h = conv(swish(GN(x))) + Dense(swish(temb)); out = conv(drop(swish(GN(h)))).
    Scale-shift (iDDPM AdaGN): the second norm becomes GN(h) * (1 + scale) + shift with
    (scale, shift) = Dense(swish(temb)). A 1x1 conv shortcut when channels change.
    """

    out_ch: int
    dropout: float
    scale_shift_norm: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, temb: jnp.ndarray, train: bool) -> jnp.ndarray:
        h = nn.swish(GroupNorm(dtype=self.dtype, name="norm1")(x))
        h = Conv3x3(self.out_ch, dtype=self.dtype, name="conv1")(h)
        emb_ch = 2 * self.out_ch if self.scale_shift_norm else self.out_ch
        emb = nn.Dense(emb_ch, kernel_init=default_init, dtype=self.dtype,
                       name="temb_proj")(nn.swish(temb))[:, None, None, :]
        if self.scale_shift_norm:
            scale, shift = jnp.split(emb, 2, axis=-1)
            h = GroupNorm(dtype=self.dtype, name="norm2")(h) * (1 + scale) + shift
        else:
            h = GroupNorm(dtype=self.dtype, name="norm2")(h + emb)
        h = Dropout(self.dropout, name="dropout")(nn.swish(h), deterministic=not train)
        h = Conv3x3(self.out_ch, zero=True, dtype=self.dtype, name="conv2")(h)
        if x.shape[-1] != self.out_ch:
            x = nn.Dense(self.out_ch, kernel_init=default_init, dtype=self.dtype,
                         name="nin_shortcut")(x)
        return x + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all H*W positions with a residual connection."""

    num_heads: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        b, hgt, wid, c = x.shape
        if c % self.num_heads:
            raise ValueError(f"{c} channels do not split into {self.num_heads} heads")
        h = GroupNorm(dtype=self.dtype, name="norm")(x)
        qkv = nn.Dense(3 * c, kernel_init=default_init, dtype=self.dtype, name="qkv")(h)
        qkv = qkv.reshape(b, hgt * wid, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        w = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (c // self.num_heads) ** -0.5
        w = nn.softmax(w.astype(jnp.float32), axis=-1).astype(v.dtype)
        h = jnp.einsum("bhqk,bkhd->bqhd", w, v).reshape(b, hgt, wid, c)
        h = nn.Dense(c, kernel_init=nn.initializers.zeros, dtype=self.dtype, name="proj_out")(h)
        return x + h


class Downsample(nn.Module):
    """Halves H and W with a stride-2 3x3 conv, or 2x2 average pooling without conv."""

    with_conv: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.with_conv:
            return nn.Conv(x.shape[-1], (3, 3), strides=2, padding=1, kernel_init=default_init,
                           dtype=self.dtype, conv_general_dilated=conv_general_dilated,
                           name="op")(x)
        return nn.avg_pool(x, (2, 2), strides=(2, 2))


class Upsample(nn.Module):
    """Doubles H and W by nearest-neighbour repetition, then an optional 3x3 conv."""

    with_conv: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        b, hgt, wid, c = x.shape
        x = jnp.broadcast_to(x[:, :, None, :, None], (b, hgt, 2, wid, 2, c))
        x = x.reshape(b, 2 * hgt, 2 * wid, c)
        if self.with_conv:
            x = Conv3x3(x.shape[-1], dtype=self.dtype, name="conv")(x)
        return x
