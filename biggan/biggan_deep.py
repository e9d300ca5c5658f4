"""BigGAN-deep generator and discriminator (Brock et al. 2018, Appendix B, Tables 7-9), NHWC.

G follows the layout of DeepMind's released BigGAN-deep (TF-Hub) so that those weights load:
cond = [z, embed(y)] feeds the first linear layer and every conditional BN; two bottleneck
blocks per resolution (the second upsamples); the non-local block sits at 64x64 by default;
the output conv has ``ch`` channels of which only the first 3 are computed. D follows
BigGAN-PyTorch's BigGAN-deep D (bottleneck blocks; skips concatenate a 1x1 conv's output when
channels grow).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from biggan.biggan import G_STAGES, ProjectionHead, d_attention_index
from biggan.layers import (
    BatchNormSettings,
    ConditionalBatchNorm,
    SelfAttention,
    SNConv,
    SNDense,
    avg_pool2,
    orthogonal_init,
    upsample_nearest,
)

D_STAGES: dict[int, tuple[tuple[int, int, bool], ...]] = {
    32: ((4, 4, True), (4, 4, True), (4, 4, False)),
    64: ((1, 2, True), (2, 4, True), (4, 8, True), (8, 16, True)),
    128: ((1, 2, True), (2, 4, True), (4, 8, True), (8, 16, True), (16, 16, True)),
    256: ((1, 2, True), (2, 4, True), (4, 8, True), (8, 8, True), (8, 16, True),
          (16, 16, True)),
    512: ((1, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 8, True), (8, 16, True),
          (16, 16, True)),
}
"""(in, out, downsample) channel multipliers of BigGAN-deep D's stages (two blocks each)."""

BOTTLENECK = 4
"""Channel reduction of the 1x1 convs inside BigGAN-deep blocks."""


class DeepGBlock(nn.Module):
    """BigGAN-deep G block (Figure 16b), DeepMind's order: BN-ReLU-conv1x1 (C -> C/4),
    BN-ReLU-[up]-conv3x3, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (-> out). The identity skip
    drops the extra channels and is upsampled with the block. x [B,H,W,C] -> [B,H',W',out]."""

    out_ch: int
    upsample: bool
    bn: BatchNormSettings
    sn_eps: float
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array, train: bool) -> jax.Array:
        mid = x.shape[-1] // BOTTLENECK

        def bn_relu(h: jax.Array, name: str) -> jax.Array:
            cbn = ConditionalBatchNorm(self.bn, None, self.sn_eps, self.dtype, name=name)
            return nn.relu(cbn(h, cond, train))

        def conv(features: int, kernel_size: int, name: str) -> SNConv:
            return SNConv(features, kernel_size, eps=self.sn_eps, dtype=self.dtype, name=name)

        h = conv(mid, 1, "conv0")(bn_relu(x, "bn0"), train)
        h = bn_relu(h, "bn1")
        skip = x[..., : self.out_ch]
        if self.upsample:
            h, skip = upsample_nearest(h), upsample_nearest(skip)
        h = conv(mid, 3, "conv1")(h, train)
        h = conv(mid, 3, "conv2")(bn_relu(h, "bn2"), train)
        h = conv(self.out_ch, 1, "conv3")(bn_relu(h, "bn3"), train)
        return h + skip


class DeepDBlock(nn.Module):
    """BigGAN-deep D block (Figure 16c): ReLU-conv1x1 (-> out/4), ReLU-conv3x3, ReLU-conv3x3,
    ReLU-[avgpool]-conv1x1 (-> out). Skip: [avgpool], then concatenate a 1x1 conv's output
    (out - in channels) when the channels grow. x [B,H,W,C] -> [B,H',W',out]."""

    out_ch: int
    downsample: bool
    sn_eps: float
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        hidden = self.out_ch // BOTTLENECK
        in_ch = x.shape[-1]

        def conv(features: int, kernel_size: int, name: str) -> SNConv:
            return SNConv(features, kernel_size, eps=self.sn_eps, dtype=self.dtype, name=name)

        h = conv(hidden, 1, "conv1")(nn.relu(x), train)
        h = conv(hidden, 3, "conv2")(nn.relu(h), train)
        h = nn.relu(conv(hidden, 3, "conv3")(nn.relu(h), train))
        skip = x
        if self.downsample:
            h, skip = avg_pool2(h), avg_pool2(skip)
        h = conv(self.out_ch, 1, "conv4")(h, train)
        if in_ch != self.out_ch:
            extra = conv(self.out_ch - in_ch, 1, "conv_sc")(skip, train)
            skip = jnp.concatenate([skip, extra], axis=-1)
        return h + skip


class DeepGenerator(nn.Module):
    """BigGAN-deep G: (z [B, z_dim], y [B] int) -> images [B, R, R, 3] in [-1, 1]."""

    resolution: int
    ch: int
    z_dim: int
    num_classes: int
    shared_dim: int
    attn_res: int
    bn: BatchNormSettings
    sn_eps: float = 1e-4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, y: jax.Array, train: bool) -> jax.Array:
        stages = G_STAGES[self.resolution]
        embedding = nn.Embed(self.num_classes, self.shared_dim, embedding_init=orthogonal_init,
                             dtype=self.dtype, name="shared_embedding")(y)
        cond = jnp.concatenate([z.astype(self.dtype), embedding], axis=-1)
        width = stages[0][0] * self.ch
        h = SNDense(4 * 4 * width, eps=self.sn_eps, dtype=self.dtype, name="linear")(cond, train)
        h = h.reshape(-1, 4, 4, width)
        resolution = 4
        index = 0
        for in_mult, out_mult in stages:
            for out_ch, upsample in ((in_mult * self.ch, False), (out_mult * self.ch, True)):
                h = DeepGBlock(out_ch, upsample, self.bn, self.sn_eps, self.dtype,
                               name=f"block{index}")(h, cond, train)
                index += 1
            resolution *= 2
            if resolution == self.attn_res:
                h = SelfAttention(self.sn_eps, self.dtype, name="attention")(h, train)
        h = nn.relu(self.bn.batch_norm(train, affine=True, name="bn_out")(h))
        h = SNConv(self.ch, 3, eps=self.sn_eps, dtype=self.dtype, kept_features=3,
                   name="conv_to_rgb")(h, train)
        return jnp.tanh(h.astype(jnp.float32))


class DeepDiscriminator(nn.Module):
    """BigGAN-deep D with projection: (x [B,R,R,3], y [B]) -> logits [B]."""

    resolution: int
    ch: int
    num_classes: int
    attn_res: int
    sn_eps: float = 1e-4
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0   # on the pooled features in training mode (Sec. 4.2)

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array, train: bool) -> jax.Array:
        stages = D_STAGES[self.resolution]
        attn_index = d_attention_index(self.resolution, [d for *_, d in stages], self.attn_res)
        h = SNConv(stages[0][0] * self.ch, 3, eps=self.sn_eps, dtype=self.dtype,
                   name="input_conv")(x.astype(self.dtype), train)
        for i, (_, out_mult, downsample) in enumerate(stages):
            for j, block_downsample in enumerate((downsample, False)):
                h = DeepDBlock(out_mult * self.ch, block_downsample, self.sn_eps, self.dtype,
                               name=f"block{2 * i + j}")(h, train)
            if i == attn_index:
                h = SelfAttention(self.sn_eps, self.dtype, name="attention")(h, train)
        return ProjectionHead(self.num_classes, self.sn_eps, self.dropout_rate,
                              name="head")(h, y, train)
