"""Differentiable augmentation for data-efficient GAN training.

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training",
Sec. 3): the same random, differentiable transforms are applied to real and fake images
whenever D sees them, in the D update and in the G update, so G's gradient flows through them.
``config.train.diffaugment`` is a comma-separated policy of

- ``color``: brightness (add U[-0.5, 0.5)), saturation (scale each pixel's deviation from its
  channel mean by U[0, 2)), contrast (scale the deviation from the image mean by U[0.5, 1.5));
- ``translation``: shift by up to 1/8 of the image size in each direction (integer pixels),
  filling the vacated pixels with zeros;
- ``cutout``: zero a square of half the image size at a uniformly drawn centre (clipped to the
  image).

Ranges: translation and cutout only move pixel values or set them to 0, so images in [-1, 1]
stay in [-1, 1]. The colour transforms follow the original and do not clip (clipping would
zero the gradient): inputs in [-1, 1] leave brightness in [-1.5, 1.5], saturation in [-3, 3]
and contrast in [-2, 2].

Adaptive augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data", Sec. 3): each transform is applied to each image with probability p; every
``ada_interval`` steps, p moves by sign(r_t - target) * images / (ada_kimg * 1000), where
r_t = E[sign(D(real))] over the interval and images is the number of real images D saw in it.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

Transform = Callable[[jax.Array, jax.Array], jax.Array]

TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 1 / 2


def _per_image_uniform(key: jax.Array, images: jax.Array) -> jax.Array:
    """U[0, 1) of shape [B, 1, 1, 1], one value per image."""
    return jax.random.uniform(key, (images.shape[0], 1, 1, 1), images.dtype)


def brightness(images: jax.Array, key: jax.Array) -> jax.Array:
    """[B, H, W, C] + U[-0.5, 0.5) per image."""
    return images + (_per_image_uniform(key, images) - 0.5)


def saturation(images: jax.Array, key: jax.Array) -> jax.Array:
    """Deviation from each pixel's channel mean scaled by U[0, 2) per image."""
    mean = jnp.mean(images, axis=-1, keepdims=True)
    return (images - mean) * (2.0 * _per_image_uniform(key, images)) + mean


def contrast(images: jax.Array, key: jax.Array) -> jax.Array:
    """Deviation from each image's mean scaled by U[0.5, 1.5) per image."""
    mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
    return (images - mean) * (_per_image_uniform(key, images) + 0.5) + mean


def translation(images: jax.Array, key: jax.Array) -> jax.Array:
    """out[i, j] = in[i + dy, j + dx] (0 outside the image), integer dy, dx drawn uniformly
    from [-s, s] per image, s = round(size / 8)."""
    b, h, w, c = images.shape
    sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    ky, kx = jax.random.split(key)
    dy = jax.random.randint(ky, (b,), -sh, sh + 1)
    dx = jax.random.randint(kx, (b,), -sw, sw + 1)
    padded = jnp.pad(images, ((0, 0), (sh, sh), (sw, sw), (0, 0)))
    return jax.vmap(lambda image, y, x: jax.lax.dynamic_slice(image, (sh + y, sw + x, 0),
                                                              (h, w, c)))(padded, dy, dx)


def cutout(images: jax.Array, key: jax.Array) -> jax.Array:
    """Zero a (size/2) x (size/2) square per image whose centre is drawn uniformly over the
    image (the square is clipped at the borders)."""
    b, h, w, _ = images.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    ky, kx = jax.random.split(key)
    top = jax.random.randint(ky, (b, 1, 1), 0, h + 1 - ch % 2) - ch // 2
    left = jax.random.randint(kx, (b, 1, 1), 0, w + 1 - cw % 2) - cw // 2
    rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return images * (~inside)[..., None].astype(images.dtype)


POLICY_TRANSFORMS: dict[str, tuple[Transform, ...]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def parse_policy(policy: str) -> tuple[Transform, ...]:
    """The transforms of ``config.train.diffaugment`` in order ('' gives none)."""
    names = [name.strip() for name in policy.split(",") if name.strip()]
    unknown = [name for name in names if name not in POLICY_TRANSFORMS]
    if unknown:
        raise ValueError(
            f"config.train.diffaugment={policy!r}: unknown {unknown}; use a comma-separated "
            f"subset of {list(POLICY_TRANSFORMS)} (e.g. 'color,translation,cutout') or '' for "
            f"no augmentation.")
    return tuple(t for name in names for t in POLICY_TRANSFORMS[name])


def augment(images: jax.Array, key: jax.Array, policy: str,
            probability: jax.Array | None = None) -> jax.Array:
    """DiffAugment ``policy`` on images [B, H, W, C]: each transform with its own key from
    ``key``; with ``probability`` (ADA's p, a scalar) each transform reaches each image with
    that probability, otherwise every image gets every transform. '' returns ``images``."""
    for index, transform in enumerate(parse_policy(policy)):
        transform_key, apply_key = jax.random.split(jax.random.fold_in(key, index))
        augmented = transform(images, transform_key)
        if probability is None:
            images = augmented
        else:
            apply = _per_image_uniform(apply_key, images) < probability
            images = jnp.where(apply, augmented, images)
    return images


def ada_enabled(train: ml_collections.ConfigDict) -> bool:
    """Whether ``config.train`` asks for adaptive augmentation strength."""
    return train.ada_target > 0


def validate_augment_config(train: ml_collections.ConfigDict) -> None:
    """Fail before any compile with a message naming the field and the fix."""
    parse_policy(train.diffaugment)
    if not 0 <= train.ada_target < 1:
        raise ValueError(f"config.train.ada_target={train.ada_target} must be in [0, 1): the "
                         f"target of E[sign(D(real))] (ADA uses 0.6), or 0 to turn ADA off.")
    if not ada_enabled(train):
        return
    if not train.diffaugment.strip():
        raise ValueError(f"config.train.ada_target={train.ada_target} adapts the strength of "
                         f"DiffAugment, but config.train.diffaugment is ''; set a policy such "
                         f"as 'color,translation,cutout' or set ada_target=0.")
    if train.ada_interval < 1:
        raise ValueError(f"config.train.ada_interval={train.ada_interval} must be >= 1 (steps "
                         f"between adjustments of p; ADA uses 4).")
    if train.ada_kimg <= 0:
        raise ValueError(f"config.train.ada_kimg={train.ada_kimg} must be > 0 (thousands of "
                         f"real images for p to move by 1; ADA uses 500).")
    if not 0 <= train.ada_p_init <= 1:
        raise ValueError(f"config.train.ada_p_init={train.ada_p_init} must be in [0, 1].")


def ada_initial_state(train: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """{'p': float32 [] (the initial p), 'real_sign_sum': float32 [] (the sum of per-step
    E[sign(D(real))] since the last adjustment)}."""
    return {"p": jnp.asarray(train.ada_p_init, jnp.float32),
            "real_sign_sum": jnp.zeros((), jnp.float32)}


def ada_update(ada: dict[str, jax.Array], real_sign: jax.Array, step: jax.Array,
               train: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """ADA's rule after step ``step`` (0-based) whose E[sign(D(real))] was ``real_sign``: every
    ``ada_interval`` steps p += sign(r_t - ada_target) * N / (ada_kimg * 1000), clipped to
    [0, 1], with r_t the mean over the interval and N the real images D saw in it."""
    real_sign_sum = ada["real_sign_sum"] + real_sign
    r_t = real_sign_sum / train.ada_interval
    images = train.batch_size * train.num_d_steps * train.ada_interval
    adjusted = jnp.clip(ada["p"] + jnp.sign(r_t - train.ada_target) * images
                        / (train.ada_kimg * 1000), 0.0, 1.0)
    adjust_now = (step + 1) % train.ada_interval == 0
    return {"p": jnp.where(adjust_now, adjusted, ada["p"]),
            "real_sign_sum": jnp.where(adjust_now, 0.0, real_sign_sum)}
