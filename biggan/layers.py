"""BigGAN building blocks (Brock et al. 2018, Sec. 3 and Appendix B), NHWC.

Variable collections:
  'params'      trainable weights (the only collection counted as parameters),
  'spectral'    spectral-norm power-iteration vectors u and the last sigma (Flax's
                ``nn.SpectralNorm``; state, never trained or EMA-averaged),
  'batch_stats' BatchNorm running statistics (replaced by standing statistics at sampling).
"""

import contextlib
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from flax.linen.dtypes import promote_dtype

from gencore.conv import conv_same

SPECTRAL = "spectral"

orthogonal_init = nn.initializers.orthogonal()
"""Orthogonal initialization (Saxe et al. 2014) used for every G and D weight (Appendix C)."""


class SNDense(nn.Module):
    """Dense layer with spectral normalization (Miyato et al. 2018), one power iteration per call.

    x [..., in] -> [..., features]. ``update_stats`` stores the new u (training only).
    """

    features: int
    use_bias: bool = True
    eps: float = 1e-4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool) -> jax.Array:
        dense = nn.Dense(
            self.features, use_bias=self.use_bias, kernel_init=orthogonal_init,
            dtype=self.dtype, name="dense",
        )
        return nn.SpectralNorm(dense, n_steps=1, epsilon=self.eps, collection_name=SPECTRAL)(
            x, update_stats=update_stats)


class SameConv(nn.Module):
    """'SAME' stride-1 convolution with nn.Conv's variables (kernel [k, k, Cin, features],
    bias [features]) computed by `gencore.conv.conv_same`.

    ``kept_features`` > 0 computes only the first that many output channels, x [B,H,W,Cin] ->
    [B,H,W,kept_features] (BigGAN-deep's conv_to_rgb holds ch outputs and keeps 3).
    """

    features: int
    kernel_size: int
    use_bias: bool = True
    kept_features: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", orthogonal_init, (k, k, x.shape[-1], self.features))
        bias = (self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias
                else None)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        kept = self.kept_features or self.features
        y = conv_same(x, kernel[..., :kept])
        return y if bias is None else y + bias[:kept]


class SNConv(nn.Module):
    """Convolution ('SAME' padding, stride 1) with spectral normalization; x [B,H,W,C].

    SN normalizes the whole kernel; ``kept_features`` as in `SameConv`.
    """

    features: int
    kernel_size: int = 3
    use_bias: bool = True
    eps: float = 1e-4
    dtype: Any = jnp.float32
    kept_features: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool) -> jax.Array:
        conv = SameConv(self.features, self.kernel_size, self.use_bias, self.kept_features,
                        self.dtype, name="conv")
        return nn.SpectralNorm(conv, n_steps=1, epsilon=self.eps, collection_name=SPECTRAL)(
            x, update_stats=update_stats)


def divide_by_stored_sigma(params: dict, spectral: dict) -> dict:
    """``params`` with every spectrally normalized weight W replaced by W / sigma, sigma the
    value stored in ``spectral`` (Miyato et al. 2018, Eq. 2 at a converged power iteration).

    With `spectral_norm_skipped` this gives sampling without a power iteration per call.
    """
    flat = traverse_util.flatten_dict(params)
    for path, sigma in traverse_util.flatten_dict(spectral).items():
        *module, _, variable = path          # (..., 'SpectralNorm_0', 'conv/kernel/sigma')
        if variable.endswith("/sigma"):
            weight = (*module, *variable.split("/")[:-1])             # (..., 'conv', 'kernel')
            flat[weight] = flat[weight] / sigma
    return traverse_util.unflatten_dict(flat)


def spectral_norm_skipped() -> contextlib.AbstractContextManager:
    """Within this context, spectral-norm layers called with ``update_stats=False`` run their
    layer on its weights as given: for weights from `divide_by_stored_sigma`."""
    def interceptor(next_fun, args, kwargs, context):
        if (isinstance(context.module, nn.SpectralNorm) and context.method_name == "__call__"
                and not kwargs["update_stats"]):
            return context.module.layer_instance(*args)
        return next_fun(*args, **kwargs)

    return nn.intercept_methods(interceptor)


class SNEmbed(nn.Module):
    """Class embedding with spectral normalization (D's projection embedding): y [B] -> [B, F]."""

    num_embeddings: int
    features: int
    eps: float = 1e-4

    @nn.compact
    def __call__(self, y: jax.Array, update_stats: bool) -> jax.Array:
        embed = nn.Embed(self.num_embeddings, self.features, embedding_init=orthogonal_init,
                         name="embed")
        return nn.SpectralNorm(embed, n_steps=1, epsilon=self.eps, collection_name=SPECTRAL)(
            y, update_stats=update_stats)


@dataclasses.dataclass(frozen=True)
class BatchNormSettings:
    """The BatchNorm settings that every BN in G shares.

    axis_name: the mesh axis whose devices reduce statistics together (cross-replica BN,
      Appendix C, when it spans every device); None on one device or outside shard_map.
    momentum: Flax convention, running = momentum * running + (1 - momentum) * batch.
    """

    eps: float = 1e-4
    momentum: float = 0.9
    axis_name: str | None = None

    def batch_norm(self, train: bool, affine: bool, name: str) -> nn.BatchNorm:
        """A BatchNorm layer with these settings; call it inside a compact method."""
        return nn.BatchNorm(
            use_running_average=not train, momentum=self.momentum, epsilon=self.eps,
            use_scale=affine, use_bias=affine, axis_name=self.axis_name, name=name,
        )


class ConditionalBatchNorm(nn.Module):
    """Class-conditional BatchNorm (de Vries et al. 2017; Dumoulin et al. 2017).

    out = BN(x) * (1 + gain(c)) + bias(c): gain centred at 1, bias at 0. ``c`` is either a
    conditioning vector [B, D] projected by spectrally normalized linear maps without bias
    (shared embedding, optionally with a z chunk), or class labels [B] looked up in per-layer
    embeddings (``num_classes`` set; Table 1 rows 1-5).
    """

    bn: BatchNormSettings
    num_classes: int | None = None
    sn_eps: float = 1e-4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array, train: bool) -> jax.Array:
        features = x.shape[-1]
        if self.num_classes is None:
            gain = SNDense(features, use_bias=False, eps=self.sn_eps, dtype=self.dtype,
                           name="scale")(cond, train)
            bias = SNDense(features, use_bias=False, eps=self.sn_eps, dtype=self.dtype,
                           name="offset")(cond, train)
        else:
            gain = nn.Embed(self.num_classes, features, embedding_init=orthogonal_init,
                            name="scale")(cond)
            bias = nn.Embed(self.num_classes, features, embedding_init=orthogonal_init,
                            name="offset")(cond)
        h = self.bn.batch_norm(train, affine=False, name="bn")(x)
        return h * (1.0 + gain[:, None, None, :]) + bias[:, None, None, :]


class SelfAttention(nn.Module):
    """SA-GAN non-local block (Zhang et al. 2018) as in BigGAN.

    theta/phi: 1x1 convs to C/8, g: C/2; phi and g max-pooled 2x2; o: C/2 -> C; a learned
    scalar gamma initialised at 0 scales the output: x + gamma * o(softmax(theta phi^T) g).
    x [B, H, W, C] with H, W even.
    """

    sn_eps: float = 1e-4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        b, h, w, c = x.shape

        def conv(features: int, name: str) -> SNConv:
            return SNConv(features, kernel_size=1, use_bias=False, eps=self.sn_eps,
                          dtype=self.dtype, name=name)

        def pool(t: jax.Array) -> jax.Array:
            return nn.max_pool(t, (2, 2), strides=(2, 2))

        theta = conv(c // 8, "theta")(x, train).reshape(b, h * w, c // 8)
        phi = pool(conv(c // 8, "phi")(x, train)).reshape(b, h * w // 4, c // 8)
        g = pool(conv(c // 2, "g")(x, train)).reshape(b, h * w // 4, c // 2)
        attn = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", theta, phi).astype(jnp.float32), -1)
        o = jnp.einsum("bqk,bkc->bqc", attn.astype(g.dtype), g).reshape(b, h, w, c // 2)
        o = conv(c, "o_conv")(o, train)
        gamma = self.param("gamma", nn.initializers.zeros, ())
        return x + gamma * o


def upsample_nearest(x: jax.Array) -> jax.Array:
    """2x nearest-neighbour upsampling [B,H,W,C] -> [B,2H,2W,C] (bilinear was worse, Sec. 3)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avg_pool2(x: jax.Array) -> jax.Array:
    """2x2 average pooling, [B,H,W,C] -> [B,H/2,W/2,C] (D's downsampling)."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


def split_z(z: jax.Array, num_chunks: int) -> list[jax.Array]:
    """Hierarchical latent (Sec. 3): split z [B, D] into ``num_chunks`` equal chunks [B, D/n]."""
    return jnp.split(z, num_chunks, axis=-1)
