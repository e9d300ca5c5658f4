"""The FID Inception-v3 network (TF's 2015 graph, as used by pytorch-fid and TF-GAN) in Flax.

This is the Inception-v3 of Szegedy et al. 2016 in the exact variant whose weights were released as
`inception-2015-12-05` and which every FID / IS number in the GAN literature is computed with
(Heusel et al. 2017; Salimans et al. 2016). It differs from torchvision's Inception-v3 in three
places (pytorch-fid's `FIDInceptionA/C/E_1/E_2`): the 3x3 average pools of the Mixed_5*, Mixed_6b-e
and Mixed_7b blocks do not count the zero padding, and Mixed_7c pools with a 3x3 max pool.
It has 1008 output classes; BatchNorm eps is 1e-3.

Inputs are images in [-1, 1] of any size, NHWC; they are resized to 299x299 the way pytorch-fid
does it (bilinear, half-pixel centres, no antialiasing, also when downscaling).

Weights: convert pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` once with
`python -m gencore.convert_inception` (see `MISSING_WEIGHTS_HELP`), then point
`config.eval.inception_weights` or the environment variable `FID_INCEPTION_WEIGHTS` at the result.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gencore import tree_npz

INCEPTION_RESOLUTION = 299
POOL_FEATURES = 2048
NUM_CLASSES = 1008
BN_EPSILON = 1e-3
WEIGHTS_ENV_VAR = "FID_INCEPTION_WEIGHTS"
PTH_NAME = "pt_inception-2015-12-05-6726825d.pth"
MISSING_WEIGHTS_HELP = (
    "The FID Inception weights are not available offline. Download pytorch-fid's "
    f"'{PTH_NAME}' (GitHub release 'fid_weights' of mseitzer/pytorch-fid), convert it with\n"
    f"    python -m gencore.convert_inception --input={PTH_NAME} --output=inception_fid.npz\n"
    "(needs torch: pip install -e '.[torch]'), then set config.eval.inception_weights or the "
    f"environment variable {WEIGHTS_ENV_VAR} to the .npz path."
)

Variables = Mapping[str, Any]


class InceptionWeightsNotFoundError(FileNotFoundError):
    """Raised when no converted Inception weights can be found; the message says how to get them."""


def resize_bilinear(images: jax.Array, height: int, width: int) -> jax.Array:
    """Bilinear resize [B, H, W, C] -> [B, height, width, C], as F.interpolate(align_corners=False).

    jax.image.resize antialiases by default when downscaling (it widens the triangle kernel);
    PyTorch's and TF's bilinear resize used by the FID references do not, so antialias is off.
    """
    shape = (images.shape[0], height, width, images.shape[3])
    return jax.image.resize(images, shape, method="bilinear", antialias=False)


class BasicConv(nn.Module):
    """Conv (no bias) -> BatchNorm(eps 1e-3, running statistics) -> ReLU."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: tuple[int, int] = (0, 0)
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad_h, pad_w = self.padding
        x = nn.Conv(
            self.features,
            self.kernel,
            strides=self.stride,
            padding=((pad_h, pad_h), (pad_w, pad_w)),
            use_bias=False,
            precision=self.precision,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average pool that ignores the zero padding (TF's AvgPool, 'SAME')."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool_features channels."""

    pool_features: int
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        b1 = conv(64, name="branch1x1")(x)
        b5 = conv(48, name="branch5x5_1")(x)
        b5 = conv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = conv(64, name="branch3x3dbl_1")(x)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = conv(self.pool_features, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a (grid reduction 35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        b3 = conv(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = conv(64, name="branch3x3dbl_1")(x)
        bd = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = conv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionC(nn.Module):
    """Mixed_6b-6e: factorised 7x7 convolutions (1x7 / 7x1) -> 768 channels."""

    channels_7x7: int
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        c7 = self.channels_7x7
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = conv(192, name="branch1x1")(x)
        b7 = conv(c7, name="branch7x7_1")(x)
        b7 = conv(c7, **row, name="branch7x7_2")(b7)
        b7 = conv(192, **col, name="branch7x7_3")(b7)
        bd = conv(c7, name="branch7x7dbl_1")(x)
        bd = conv(c7, **col, name="branch7x7dbl_2")(bd)
        bd = conv(c7, **row, name="branch7x7dbl_3")(bd)
        bd = conv(c7, **col, name="branch7x7dbl_4")(bd)
        bd = conv(192, **row, name="branch7x7dbl_5")(bd)
        bp = conv(192, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a (grid reduction 17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        b3 = conv(192, name="branch3x3_1")(x)
        b3 = conv(320, (3, 3), stride=2, name="branch3x3_2")(b3)
        b7 = conv(192, name="branch7x7x3_1")(x)
        b7 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = conv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionE(nn.Module):
    """Mixed_7b / 7c: expanded filter bank -> 2048 channels.

    `max_pool=True` is Mixed_7c of the 2015 graph (pytorch-fid's FIDInceptionE_2), which pools
    with a 3x3 max pool where the paper's network averages.
    """

    max_pool: bool = False
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        b1 = conv(320, name="branch1x1")(x)
        b3 = conv(384, name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [conv(384, **row, name="branch3x3_2a")(b3), conv(384, **col, name="branch3x3_2b")(b3)],
            axis=-1,
        )
        bd = conv(448, name="branch3x3dbl_1")(x)
        bd = conv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                conv(384, **row, name="branch3x3dbl_3a")(bd),
                conv(384, **col, name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        if self.max_pool:
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_3x3(x)
        bp = conv(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class Logits(nn.Module):
    """The 2048 -> 1008 softmax layer; the bias is a variable either way but added only if asked."""

    num_classes: int
    add_bias: bool
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, pool: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (pool.shape[-1], self.num_classes)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.num_classes,))
        logits = jnp.dot(pool, kernel, precision=self.precision)
        return logits + bias if self.add_bias else logits


class InceptionV3(nn.Module):
    """FID Inception-v3: images [B, H, W, 3] in [-1, 1] -> (pool3 [B, 2048], logits [B, 1008]).

    `logits_bias=False` gives the logits the original Inception Score code uses (Salimans et al.
    2016, openai/improved-gan: pool3 @ W without the softmax bias; torch-fidelity's
    'logits_unbiased'); `True` adds the bias (pytorch-fid's / torchvision's `fc`).
    """

    resize_input: bool = True
    logits_bias: bool = False
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        p = self.precision
        x = images.astype(jnp.float32)
        if self.resize_input:
            x = resize_bilinear(x, INCEPTION_RESOLUTION, INCEPTION_RESOLUTION)
        x = BasicConv(32, (3, 3), stride=2, precision=p, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), precision=p, name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), precision=p, name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_stride2(x)
        x = BasicConv(80, precision=p, name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), precision=p, name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_stride2(x)
        x = InceptionA(32, precision=p, name="Mixed_5b")(x)
        x = InceptionA(64, precision=p, name="Mixed_5c")(x)
        x = InceptionA(64, precision=p, name="Mixed_5d")(x)
        x = InceptionB(precision=p, name="Mixed_6a")(x)
        x = InceptionC(128, precision=p, name="Mixed_6b")(x)
        x = InceptionC(160, precision=p, name="Mixed_6c")(x)
        x = InceptionC(160, precision=p, name="Mixed_6d")(x)
        x = InceptionC(192, precision=p, name="Mixed_6e")(x)
        x = InceptionD(precision=p, name="Mixed_7a")(x)
        x = InceptionE(max_pool=False, precision=p, name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, precision=p, name="Mixed_7c")(x)
        pool = jnp.mean(x, axis=(1, 2))
        logits = Logits(NUM_CLASSES, self.logits_bias, precision=p, name="fc")(pool)
        return pool, logits


def variable_shapes() -> dict[str, tuple[int, ...]]:
    """Flat map 'params/Mixed_5b/branch1x1/conv/kernel' -> shape of the network's variables."""
    shapes = jax.eval_shape(
        InceptionV3(resize_input=False).init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, INCEPTION_RESOLUTION, INCEPTION_RESOLUTION, 3), jnp.float32),
    )
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes, sep="/").items()}


def save_variables(variables: Variables, path: str | os.PathLike) -> Path:
    """Writes the network's variables (float32) to an .npz keyed by 'collection/module/.../name'."""
    tree = jax.tree.map(lambda v: np.asarray(v, np.float32), dict(variables))
    return tree_npz.save_tree(tree, path, {"network": "fid_inception_v3_2015_12_05"})


def load_variables(path: str | os.PathLike) -> dict[str, Any]:
    """Reads variables written by `save_variables`; checks names and shapes against the network."""
    flat, _ = tree_npz.load_flat(path)
    flat = {k: v.astype(np.float32) for k, v in flat.items()}
    check_variables(flat)
    return traverse_util.unflatten_dict(flat, sep="/")


def check_variables(
    flat: Mapping[str, np.ndarray], expected: Mapping[str, Sequence[int]] | None = None
) -> None:
    """Raises ValueError naming every missing, unexpected or mis-shaped variable."""
    expected = variable_shapes() if expected is None else expected
    problems = [f"missing: {k}" for k in sorted(set(expected) - set(flat))]
    problems += [f"unexpected: {k}" for k in sorted(set(flat) - set(expected))]
    problems += [
        f"shape of {k}: {tuple(flat[k].shape)} != expected {tuple(expected[k])}"
        for k in sorted(set(flat) & set(expected))
        if tuple(flat[k].shape) != tuple(expected[k])
    ]
    if problems:
        shown = "\n  ".join(problems[:20])
        raise ValueError(f"Inception variables do not match the network:\n  {shown}")


def resolve_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The converted weights: `path` (config.eval.inception_weights), else $FID_INCEPTION_WEIGHTS.

    Raises InceptionWeightsNotFoundError with instructions when neither names an existing file.
    """
    candidate = path or os.environ.get(WEIGHTS_ENV_VAR)
    if not candidate:
        raise InceptionWeightsNotFoundError(
            f"No Inception weights configured (config.eval.inception_weights and "
            f"${WEIGHTS_ENV_VAR} are empty).\n{MISSING_WEIGHTS_HELP}"
        )
    resolved = Path(candidate).expanduser()
    if not resolved.is_file():
        raise InceptionWeightsNotFoundError(
            f"Inception weights file {resolved} does not exist.\n{MISSING_WEIGHTS_HELP}"
        )
    if resolved.suffix == ".pth":
        raise InceptionWeightsNotFoundError(
            f"{resolved} is the PyTorch file; convert it first:\n{MISSING_WEIGHTS_HELP}"
        )
    return resolved
