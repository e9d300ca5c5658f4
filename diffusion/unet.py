"""The DDPM / Improved DDPM U-Net (DDPM App. B; iDDPM Sec. 3-4 and App. A).

One module covers both papers: DDPM is the setting `scale_shift_norm=False, num_heads=1,
learn_sigma=False, num_classes=0`; iDDPM adds AdaGN, multi-head attention at several
resolutions, the learned-variance output and class conditioning. Each paper row's config
(`configs/diffusion/`) writes out its U-Net's fields; their parameter counts equal the
authors' code.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from diffusion.layers import (
    AttentionBlock,
    Conv3x3,
    Downsample,
    GroupNorm,
    ResBlock,
    Upsample,
    default_init,
    timestep_embedding,
)


class UNet(nn.Module):
    """eps_theta(x_t, t[, y]): NHWC images -> [B, H, W, C] (or 2C with `learn_sigma`).

    Attributes:
      ch: base channel count; level l has ch * ch_mult[l] channels.
      ch_mult: channel multiplier per resolution level (each level but the last halves H, W).
      num_res_blocks: residual blocks per level on the way down (one more on the way up).
      attn_resolutions: spatial sizes (e.g. 16, 8) at which self-attention follows each block.
      dropout: dropout rate inside residual blocks.
      num_heads: attention heads.
      learn_sigma: also output the variance interpolation v (iDDPM Eq. 15) -> 2C channels.
      num_classes: 0 for an unconditional model, else the number of labels y in [0, num_classes).
      null_class: reserve label index `num_classes` as the "no label" of classifier-free guidance.
      scale_shift_norm: AdaGN conditioning (iDDPM) instead of an added bias (DDPM).
      resamp_with_conv: conv up/down-sampling (else nearest / average pooling only).
      dtype: computation dtype (params stay float32); the output is float32.
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    num_heads: int = 1
    learn_sigma: bool = False
    num_classes: int = 0
    null_class: bool = False
    scale_shift_norm: bool = False
    resamp_with_conv: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, t: jnp.ndarray, y: jnp.ndarray | None = None, train: bool = False
    ) -> jnp.ndarray:
        """x [B, H, W, C] in [-1, 1]; t [B] model time (0..1000); y [B] int labels or None."""
        out_ch = x.shape[-1] * (2 if self.learn_sigma else 1)
        temb = timestep_embedding(t, self.ch)
        temb = nn.Dense(4 * self.ch, kernel_init=default_init, dtype=self.dtype, name="temb0")(temb)
        temb = nn.Dense(4 * self.ch, kernel_init=default_init, dtype=self.dtype,
                        name="temb1")(nn.swish(temb))
        if self.num_classes:
            if y is None:
                raise ValueError("a class-conditional U-Net needs labels y")
            rows = self.num_classes + int(self.null_class)
            temb = temb + nn.Embed(rows, 4 * self.ch, name="label_emb")(y).astype(temb.dtype)

        def block(h: jnp.ndarray, out: int, name: str) -> jnp.ndarray:
            h = ResBlock(out, self.dropout, self.scale_shift_norm, self.dtype,
                         name=f"{name}_res")(h, temb, train)
            if h.shape[1] in self.attn_resolutions:
                h = AttentionBlock(self.num_heads, self.dtype, name=f"{name}_attn")(h)
            return h

        hs = [Conv3x3(self.ch, dtype=self.dtype, name="conv_in")(x)]
        levels = len(self.ch_mult)
        for lvl, mult in enumerate(self.ch_mult):
            for i in range(self.num_res_blocks):
                hs.append(block(hs[-1], self.ch * mult, f"down{lvl}_{i}"))
            if lvl != levels - 1:
                down = Downsample(self.resamp_with_conv, self.dtype, name=f"down{lvl}_ds")
                hs.append(down(hs[-1]))

        h = ResBlock(hs[-1].shape[-1], self.dropout, self.scale_shift_norm, self.dtype,
                     name="mid_res0")(hs[-1], temb, train)
        h = AttentionBlock(self.num_heads, self.dtype, name="mid_attn")(h)
        h = ResBlock(h.shape[-1], self.dropout, self.scale_shift_norm, self.dtype,
                     name="mid_res1")(h, temb, train)

        for lvl in reversed(range(levels)):
            for i in range(self.num_res_blocks + 1):
                h = block(jnp.concatenate([h, hs.pop()], axis=-1), self.ch * self.ch_mult[lvl],
                          f"up{lvl}_{i}")
            if lvl != 0:
                h = Upsample(self.resamp_with_conv, self.dtype, name=f"up{lvl}_us")(h)

        h = nn.swish(GroupNorm(dtype=self.dtype, name="norm_out")(h))
        h = Conv3x3(out_ch, zero=True, dtype=self.dtype, name="conv_out")(h)
        return h.astype(jnp.float32)


_FIELDS = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "num_heads",
           "learn_sigma", "num_classes", "null_class", "scale_shift_norm", "resamp_with_conv")


def unet_from_config(model: ml_collections.ConfigDict | dict[str, Any],
                     dtype: Any = jnp.float32) -> UNet:
    """Builds the U-Net from a `config.model` section (fields named as UNet's attributes).

    Fields not given keep UNet's defaults; unknown fields (e.g. `name`) are ignored.
    """
    kwargs = {k: model[k] for k in _FIELDS if k in model}
    for k in ("ch_mult", "attn_resolutions"):
        if k in kwargs:
            kwargs[k] = tuple(kwargs[k])
    return UNet(dtype=dtype, **kwargs)
