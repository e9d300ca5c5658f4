"""A small CNN classifier of the embedded default data (scikit-learn's 8x8 digits at 32x32).

No Inception weights can be had offline, so for the embedded default data this network provides
the feature space (its 64-d penultimate layer) for a data-specific FID / KID / precision-recall,
and class predictions for "samples of class y are classified as y" accuracy. These figures are
specific to this classifier and not comparable with Inception-based FID or IS. It is trained on
the data pipeline's own images (`gencore.data`, 'digits' at 32x32).

Train once and cache (a few seconds on a CPU):

    python -m gencore.digits_classifier [--out=PATH]

The cache lives at $DIGITS_CLASSIFIER_PATH, else $XDG_CACHE_HOME (default ~/.cache)
/biggan_diffusion_jax/digits_classifier.npz. `load_or_train` trains and caches it when missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging

from gencore import tree_npz
from gencore.console import stop_on_error
from gencore.inception import resize_bilinear

RESOLUTION = 32
NUM_CLASSES = 10
FEATURE_DIM = 64
CACHE_ENV_VAR = "DIGITS_CLASSIFIER_PATH"
_FORMAT = "digits_cnn_v1"


def default_cache_path() -> Path:
    """$DIGITS_CLASSIFIER_PATH, else $XDG_CACHE_HOME or ~/.cache + /biggan_diffusion_jax/..."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "biggan_diffusion_jax" / "digits_classifier.npz"


def load_digits_images(resolution: int = RESOLUTION) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits from the data pipeline (`gencore.data`, name 'digits', no flips).

    Returns images [N, res, res, 3] in [-1, 1] and labels [N] int32, preprocessed exactly as the
    models are trained on them (in the pipeline's epoch-0 order).
    """
    from gencore.data import create_input_pipeline, default_data_config

    data_config = default_data_config()
    data_config.update(name="digits", resolution=resolution, random_flip=False, train_fraction=1.0)
    layout = dict(seed=0, process_index=0, process_count=1)
    num_examples = create_input_pipeline(data_config, global_batch_size=1, **layout).num_examples
    batch = next(create_input_pipeline(data_config, global_batch_size=num_examples, **layout))
    return batch["image"], batch["label"]


def train_test_split(seed: int = 0, test_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Stratified held-out split of the digits: keys train_images/labels, test_images/labels."""
    from sklearn.model_selection import train_test_split as split

    images, labels = load_digits_images()
    tr_x, te_x, tr_y, te_y = split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    return dict(train_images=tr_x, train_labels=tr_y, test_images=te_x, test_labels=te_y)


class DigitsCNN(nn.Module):
    """images [B, H, W, C] in [-1, 1] -> (features [B, 64] (post-ReLU), logits [B, 10]).

    Channels are averaged to grey and other sizes are resized to 32x32 first. Three 3x3 conv +
    ReLU + 2x2 average-pool stages (16, 32, 64 channels), a 64-unit dense layer, a linear head.
    """

    feature_dim: int = FEATURE_DIM
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = jnp.mean(images.astype(jnp.float32), axis=-1, keepdims=True)
        if x.shape[1:3] != (RESOLUTION, RESOLUTION):
            x = resize_bilinear(x, RESOLUTION, RESOLUTION)
        for channels in (16, 32, 64):
            x = nn.relu(nn.Conv(channels, (3, 3))(x))
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        features = nn.relu(nn.Dense(self.feature_dim)(x.reshape(x.shape[0], -1)))
        return features, nn.Dense(self.num_classes)(features)


def _random_shift(rng: jax.Array, images: jax.Array, max_shift: int = 2) -> jax.Array:
    """Translates each image by up to `max_shift` pixels, filling with background (-1)."""
    size = images.shape[1]
    padded = jnp.pad(
        images,
        ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)),
        constant_values=-1.0,
    )
    offsets = jax.random.randint(rng, (images.shape[0], 2), 0, 2 * max_shift + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(
            image, (offset[0], offset[1], 0), (size, size, image.shape[-1])
        )

    return jax.vmap(crop)(padded, offsets)


def train_digits_classifier(
    seed: int = 0, epochs: int = 20, batch_size: int = 64, learning_rate: float = 3e-3
) -> tuple[dict[str, Any], dict[str, float]]:
    """Trains DigitsCNN with Adam (cosine-decayed lr) on 80% of the digits, random 2-px shifts.

    Returns (params, {'test_accuracy': accuracy on the stratified 20% held out, ...}).
    """
    data = train_test_split(seed)
    model = DigitsCNN()
    rng = jax.random.key(seed)
    params = model.init(rng, jnp.zeros((1, RESOLUTION, RESOLUTION, 3)))["params"]
    steps_per_epoch = len(data["train_images"]) // batch_size
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, epochs * steps_per_epoch))
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, images, labels, rng):
        def loss_fn(p):
            _, logits = model.apply({"params": p}, _random_shift(rng, images))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    train_x, train_y = data["train_images"], data["train_labels"]
    order_rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = order_rng.permutation(len(train_x))
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            rng, step_rng = jax.random.split(rng)
            params, opt_state, loss = step(params, opt_state, train_x[idx], train_y[idx], step_rng)
    _, logits = model.apply({"params": params}, data["test_images"])
    accuracy = float(np.mean(np.argmax(np.asarray(logits), axis=1) == data["test_labels"]))
    return params, {"test_accuracy": accuracy, "final_loss": float(loss), "epochs": epochs}


class DigitsClassifierExtractor:
    """FeatureExtractor of DigitsCNN: images [B, H, W, 3] in [-1, 1] -> ([B, 64], [B, 10])."""

    name = "digits_classifier"
    feature_dim = FEATURE_DIM
    num_classes = NUM_CLASSES
    data_specific = True  # figures in this space are not comparable with Inception FID / IS

    def __init__(self, params: Any, info: dict[str, Any] | None = None):
        self.params = params
        self.info = dict(info or {})
        self._apply = jax.jit(DigitsCNN().apply)

    def features(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self._apply({"params": self.params}, images)


def save_classifier(params: Any, info: dict[str, Any], path: str | os.PathLike) -> Path:
    return tree_npz.save_tree(params, path, {"format": _FORMAT, **info})


def load_or_train(
    path: str | os.PathLike | None = None, train_if_missing: bool = True
) -> DigitsClassifierExtractor:
    """Loads the cached classifier (default `default_cache_path()`); trains and caches it if it
    is absent or damaged."""
    path = Path(path) if path else default_cache_path()
    if path.is_file():
        try:
            params, info = tree_npz.load_tree(path)
        except tree_npz.DamagedFileError as error:
            if not train_if_missing:
                raise
            logging.warning("%s Training the classifier again.", error)
            path.unlink()
            return load_or_train(path)
        if info.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a {_FORMAT} classifier (metadata {info}); delete it.")
        return DigitsClassifierExtractor(params, info)
    if not train_if_missing:
        raise FileNotFoundError(
            f"No digits classifier at {path}; train it with python -m gencore.digits_classifier"
        )
    params, info = train_digits_classifier()
    save_classifier(params, info, path)
    return DigitsClassifierExtractor(params, info)


def main(argv: list[str]) -> None:
    del argv
    flag = flags.FLAGS
    params, info = train_digits_classifier(seed=flag.seed, epochs=flag.epochs)
    path = save_classifier(params, info, flag.out or default_cache_path())
    print(f"Held-out accuracy {info['test_accuracy']:.4f}; wrote {path}")


if __name__ == "__main__":
    flags.DEFINE_string("out", None, "Where to cache the classifier (default: see docstring).")
    flags.DEFINE_integer("epochs", 20, "Training epochs over the 80% training split.")
    flags.DEFINE_integer("seed", 0, "Seed of the split, the initialisation and the batches.")
    app.run(stop_on_error("digits_classifier", main))
