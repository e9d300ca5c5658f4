"""The feature spaces sample-quality metrics are computed in, behind one interface.

`FeatureExtractor.features(images [B, H, W, 3] in [-1, 1]) -> (pool [B, D], logits [B, K])`:
- 'inception': the FID Inception-v3 (`gencore.inception`), D = 2048, K = 1008. Needs the
  converted weights (config.eval.inception_weights or $FID_INCEPTION_WEIGHTS); without them
  `create_feature_extractor` raises `InceptionWeightsNotFoundError` saying how to get them.
- 'digits_classifier': the CNN trained on the embedded digits (`gencore.digits_classifier`),
  D = 64, K = 10. Its metrics are data-specific (`data_specific = True`): not comparable with
  Inception FID / IS.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np

from gencore import digits_classifier, inception

EXTRACTORS = ("inception", "digits_classifier")


@runtime_checkable
class FeatureExtractor(Protocol):
    """A network giving a feature space and class logits for images in [-1, 1]."""

    name: str
    feature_dim: int
    num_classes: int
    data_specific: bool

    def features(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images [B, H, W, 3] in [-1, 1] -> (features [B, feature_dim], logits [B, num_classes])"""
        ...


class InceptionExtractor:
    """FID Inception-v3: pool3 features [B, 2048] and 1008-way logits (IS convention by default)."""

    name = "inception"
    feature_dim = inception.POOL_FEATURES
    num_classes = inception.NUM_CLASSES
    data_specific = False

    def __init__(self, variables: Mapping[str, Any], logits_bias: bool = False):
        self.variables = jax.device_put(dict(variables))
        self._apply = jax.jit(inception.InceptionV3(logits_bias=logits_bias).apply)

    @classmethod
    def from_weights(cls, path: str | os.PathLike | None = None) -> InceptionExtractor:
        """Loads converted weights from `path`, else from $FID_INCEPTION_WEIGHTS."""
        return cls(inception.load_variables(inception.resolve_weights_path(path)))

    def features(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self._apply(self.variables, images)


def create_feature_extractor(
    name: str,
    inception_weights: str | os.PathLike | None = None,
    digits_classifier_path: str | os.PathLike | None = None,
) -> FeatureExtractor:
    """'inception' (weights from the path or $FID_INCEPTION_WEIGHTS) or 'digits_classifier'.

    Raises inception.InceptionWeightsNotFoundError (a FileNotFoundError, with instructions) when
    the Inception weights are missing, so a caller can fall back to the digits classifier.
    The digits classifier is loaded from its cache, trained and cached first if absent.
    """
    if name == "inception":
        return InceptionExtractor.from_weights(inception_weights)
    if name == "digits_classifier":
        return digits_classifier.load_or_train(digits_classifier_path)
    raise ValueError(f"Unknown feature extractor {name!r}; expected one of {EXTRACTORS}.")


@dataclass
class FeatureSet:
    """Features [N, D] and logits [N, K] of N images (float32), with their labels [N] if known."""

    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray | None = None


def extract_features(
    extractor: FeatureExtractor,
    batches: Iterable[Mapping[str, Any] | np.ndarray | jax.Array],
    num_examples: int | None = None,
) -> FeatureSet:
    """Runs `extractor` over batches (arrays, or dicts with 'image' and optionally 'label').

    Stops after `num_examples` images (truncating the last batch) or when `batches` ends; pass
    `num_examples` for endless streams such as `gencore.data.create_input_pipeline`.
    """
    features, logits, labels = [], [], []
    count = 0
    for batch in batches:
        if num_examples is not None and count >= num_examples:
            break
        images = batch["image"] if isinstance(batch, Mapping) else batch
        take = len(images) if num_examples is None else min(len(images), num_examples - count)
        f, lg = jax.device_get(extractor.features(images))
        features.append(np.asarray(f[:take], np.float32))
        logits.append(np.asarray(lg[:take], np.float32))
        if isinstance(batch, Mapping) and "label" in batch:
            labels.append(np.asarray(batch["label"])[:take])
        count += take
    if num_examples is not None and count < num_examples:
        raise ValueError(f"The batches ended after {count} of {num_examples} images.")
    if not features:
        raise ValueError("No images to extract features from.")
    return FeatureSet(
        np.concatenate(features),
        np.concatenate(logits),
        np.concatenate(labels) if len(labels) == len(features) else None,
    )
