"""BigGAN generator and discriminator (Brock et al. 2018, Appendix B, Tables 4-6), NHWC.

The layout follows the first author's BigGAN-PyTorch, whose parameter counts the tests check:
G's blocks are ``BN-ReLU-up-conv3x3-BN-ReLU-conv3x3`` with an upsampled 1x1-conv skip; D's
blocks are ``ReLU-conv3x3-ReLU-conv3x3-avgpool`` (no ReLU on the raw image in the first block)
with a 1x1-conv skip whenever the channels change or the block downsamples.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from biggan.layers import (
    BatchNormSettings,
    ConditionalBatchNorm,
    SelfAttention,
    SNConv,
    SNDense,
    SNEmbed,
    avg_pool2,
    orthogonal_init,
    split_z,
    upsample_nearest,
)

G_STAGES: dict[int, tuple[tuple[int, int], ...]] = {
    16: ((4, 4), (4, 4)),
    32: ((4, 4), (4, 4), (4, 4)),
    64: ((16, 16), (16, 8), (8, 4), (4, 2)),
    128: ((16, 16), (16, 8), (8, 4), (4, 2), (2, 1)),
    256: ((16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1)),
    512: ((16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1), (1, 1)),
}
"""(in, out) channel multipliers of G's upsampling stages from 4x4 to the image resolution.
BigGAN uses one block per stage, BigGAN-deep two (Tables 4-9). 16 is not in the paper: the
32x32 layout less one stage, for small CPU runs (BigGAN only; BigGAN-deep has no 16x16 D)."""

D_BLOCKS: dict[int, tuple[tuple[int, bool], ...]] = {
    16: ((4, True), (4, False), (4, False)),
    32: ((4, True), (4, True), (4, False), (4, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
    128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
    256: ((1, True), (2, True), (4, True), (8, True), (8, True), (16, True), (16, False)),
    512: ((1, True), (2, True), (4, True), (8, True), (8, True), (16, True), (16, True),
          (16, False)),
}
"""(out channel multiplier, downsample) of BigGAN D's blocks; the first block reads RGB.
16: the 32x32 layout less one downsampling block (not in the paper)."""


def g_stage_resolutions(resolution: int) -> tuple[int, ...]:
    """Output resolution of each G stage (either variant): where a non-local block can go."""
    return tuple(8 * 2**i for i in range(len(G_STAGES[resolution])))


def d_stage_resolutions(resolution: int, downsamples: list[bool]) -> list[int]:
    """Output resolution of each D stage given which stages downsample."""
    out = []
    for downsample in downsamples:
        resolution //= 2 if downsample else 1
        out.append(resolution)
    return out


def d_attention_index(resolution: int, downsamples: list[bool], attn_res: int) -> int | None:
    """Index of the D stage after which the non-local block goes: the first stage whose output
    resolution is ``attn_res`` (None for no attention)."""
    resolutions = d_stage_resolutions(resolution, downsamples)
    return resolutions.index(attn_res) if attn_res in resolutions else None


class GBlock(nn.Module):
    """BigGAN G residual block with 2x upsampling (Figure 15b). x [B,H,W,Cin] -> [B,2H,2W,out]."""

    out_ch: int
    bn: BatchNormSettings
    cbn_num_classes: int | None
    sn_eps: float
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array, train: bool) -> jax.Array:
        def cbn(name: str) -> ConditionalBatchNorm:
            return ConditionalBatchNorm(self.bn, self.cbn_num_classes, self.sn_eps, self.dtype,
                                        name=name)

        def conv(kernel_size: int, name: str) -> SNConv:
            return SNConv(self.out_ch, kernel_size, eps=self.sn_eps, dtype=self.dtype, name=name)

        h = upsample_nearest(nn.relu(cbn("bn1")(x, cond, train)))
        h = conv(3, "conv1")(h, train)
        h = conv(3, "conv2")(nn.relu(cbn("bn2")(h, cond, train)), train)
        return h + conv(1, "conv_sc")(upsample_nearest(x), train)


class DBlock(nn.Module):
    """BigGAN D residual block (Figure 15c). x [B,H,W,Cin] -> [B,H/2,W/2,out] if downsampling."""

    out_ch: int
    downsample: bool
    preactivation: bool
    sn_eps: float
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        def conv(kernel_size: int, name: str) -> SNConv:
            return SNConv(self.out_ch, kernel_size, eps=self.sn_eps, dtype=self.dtype, name=name)

        h = nn.relu(x) if self.preactivation else x
        h = conv(3, "conv2")(nn.relu(conv(3, "conv1")(h, train)), train)
        if self.downsample:
            h = avg_pool2(h)
        skip = x
        learnable_skip = x.shape[-1] != self.out_ch or self.downsample
        if self.preactivation:
            skip = conv(1, "conv_sc")(skip, train) if learnable_skip else skip
            skip = avg_pool2(skip) if self.downsample else skip
        else:
            skip = avg_pool2(skip) if self.downsample else skip
            skip = conv(1, "conv_sc")(skip, train) if learnable_skip else skip
        return h + skip


class Generator(nn.Module):
    """BigGAN G: (z [B, z_dim], y [B] int) -> images [B, R, R, 3] in [-1, 1].

    shared_dim > 0: one shared class embedding projected into every conditional BN
    (Sec. 3); shared_dim == 0: a separate class embedding per BN (Table 1 rows 1-5).
    hier: z is split into one chunk for the first linear layer and one per block, each
    concatenated as [z_chunk, embedding] (the order of DeepMind's released models).
    """

    resolution: int
    ch: int
    z_dim: int
    num_classes: int
    shared_dim: int
    hier: bool
    attn_res: int
    bn: BatchNormSettings
    sn_eps: float = 1e-4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, y: jax.Array, train: bool) -> jax.Array:
        stages = G_STAGES[self.resolution]
        z = z.astype(self.dtype)
        if self.shared_dim:
            embedding = nn.Embed(self.num_classes, self.shared_dim, embedding_init=orthogonal_init,
                                 dtype=self.dtype, name="shared_embedding")(y)
        if self.hier:
            z, *z_chunks = split_z(z, len(stages) + 1)
            conds = [jnp.concatenate([chunk, embedding], -1) for chunk in z_chunks]
        else:
            conds = [embedding if self.shared_dim else y] * len(stages)
        width = stages[0][0] * self.ch
        h = SNDense(4 * 4 * width, eps=self.sn_eps, dtype=self.dtype, name="linear")(z, train)
        h = h.reshape(-1, 4, 4, width)
        resolution = 4
        for i, ((_, out_mult), cond) in enumerate(zip(stages, conds, strict=True)):
            h = GBlock(out_mult * self.ch, self.bn, None if self.shared_dim else self.num_classes,
                       self.sn_eps, self.dtype, name=f"block{i}")(h, cond, train)
            resolution *= 2
            if resolution == self.attn_res:
                h = SelfAttention(self.sn_eps, self.dtype, name="attention")(h, train)
        h = nn.relu(self.bn.batch_norm(train, affine=True, name="bn_out")(h))
        h = SNConv(3, 3, eps=self.sn_eps, dtype=self.dtype, name="conv_out")(h, train)
        return jnp.tanh(h.astype(jnp.float32))


class Discriminator(nn.Module):
    """BigGAN D with projection (Miyato & Koyama 2018): (x [B,R,R,3], y [B]) -> logits [B].

    D(x, y) = linear(h) + <embed(y), h>, h = global sum pool of ReLU(features).
    dropout_rate > 0: dropout on h in training mode (Sec. 4.2; needs a 'dropout' rng).
    """

    resolution: int
    ch: int
    num_classes: int
    attn_res: int
    sn_eps: float = 1e-4
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array, train: bool) -> jax.Array:
        blocks = D_BLOCKS[self.resolution]
        attn_index = d_attention_index(self.resolution, [d for _, d in blocks], self.attn_res)
        h = x.astype(self.dtype)
        for i, (out_mult, downsample) in enumerate(blocks):
            h = DBlock(out_mult * self.ch, downsample, i > 0, self.sn_eps, self.dtype,
                       name=f"block{i}")(h, train)
            if i == attn_index:
                h = SelfAttention(self.sn_eps, self.dtype, name="attention")(h, train)
        return ProjectionHead(self.num_classes, self.sn_eps, self.dropout_rate,
                              name="head")(h, y, train)


class ProjectionHead(nn.Module):
    """D's output (Miyato & Koyama 2018): ReLU, global sum pooling, then
    linear(h) + <embed(y), h>. h [B,H,W,C], y [B] -> logits [B] (float32).

    dropout_rate > 0: dropout on the pooled features (D's last feature layer, Sec. 4.2 and
    Appendix I) when ``train``; draws from the 'dropout' rng."""

    num_classes: int
    sn_eps: float = 1e-4
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, h: jax.Array, y: jax.Array, train: bool) -> jax.Array:
        h = jnp.sum(nn.relu(h.astype(jnp.float32)), axis=(1, 2))
        if self.dropout_rate:
            h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        out = SNDense(1, eps=self.sn_eps, name="linear")(h, train)[:, 0]
        embed = SNEmbed(self.num_classes, h.shape[-1], eps=self.sn_eps, name="embed")(y, train)
        return out + jnp.sum(embed * h, axis=-1)
