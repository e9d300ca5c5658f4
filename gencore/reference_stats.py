"""Reference statistics of a dataset split in a feature space, computed once and cached.

    python -m gencore.reference_stats --config=configs/biggan/digits.py \
        [--extractor=digits_classifier|inception] [--split=train] [--num_examples=N] [--out=PATH]

Stores mu [D] and sigma [D, D] (float64) of the features of every image of the split (for FID)
and a seeded random subset of at most 10k features (for KID and precision / recall), with the
dataset, split, resolution, feature extractor and image count, which every report must state
(FID against train and against validation statistics differ). Images come from the data
pipeline without random flips and with the full split (data.train_fraction ignored), each image
exactly once. The default file is under $REFERENCE_STATS_DIR, else $XDG_CACHE_HOME (default
~/.cache)/biggan_diffusion_jax/reference_stats/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from gencore import metrics, tree_npz
from gencore.console import stop_on_error
from gencore.feature_extractors import FeatureExtractor, create_feature_extractor, extract_features

CACHE_ENV_VAR = "REFERENCE_STATS_DIR"
_FORMAT = "reference_stats_v1"


@dataclass
class ReferenceStats:
    """Feature statistics of `num_examples` images of `dataset`'s `split` in `extractor`'s space."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    dataset: str
    split: str
    resolution: int
    extractor: str
    num_examples: int

    def describe(self) -> str:
        return (
            f"{self.dataset} split '{self.split}' ({self.num_examples} images at "
            f"{self.resolution}px) in the {self.extractor} feature space"
        )

    def save(self, path: str | os.PathLike) -> Path:
        metadata = {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray)}
        arrays = dict(mu=self.mu, sigma=self.sigma, features=self.features)
        return tree_npz.save_tree(arrays, path, {"format": _FORMAT, **metadata})

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceStats:
        arrays, metadata = tree_npz.load_tree(path)
        if metadata.pop("format", None) != _FORMAT:
            raise ValueError(f"{path} does not hold reference statistics ({_FORMAT}).")
        return cls(**arrays, **metadata)


def compute_reference_stats(
    extractor: FeatureExtractor,
    batches: Iterable[Mapping[str, Any] | np.ndarray],
    *,
    dataset: str,
    split: str,
    resolution: int,
    num_examples: int | None = None,
    max_stored_features: int = 10_000,
    seed: int = 0,
) -> ReferenceStats:
    """Statistics of the first `num_examples` images of `batches` (all of them if None)."""
    feature_set = extract_features(extractor, batches, num_examples)
    mu, sigma = metrics.gaussian_statistics(feature_set.features)
    count = len(feature_set.features)
    keep = np.random.default_rng(seed).choice(count, min(count, max_stored_features), replace=False)
    return ReferenceStats(
        mu=mu,
        sigma=sigma,
        features=feature_set.features[np.sort(keep)],
        dataset=dataset,
        split=split,
        resolution=int(resolution),
        extractor=extractor.name,
        num_examples=count,
    )


def default_path(dataset: str, resolution: int, split: str, extractor: str) -> Path:
    """$REFERENCE_STATS_DIR or <cache>/biggan_diffusion_jax/reference_stats/<name>.npz."""
    root = os.environ.get(CACHE_ENV_VAR)
    if not root:
        cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(cache_home) / "biggan_diffusion_jax" / "reference_stats"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dataset}_{resolution}px_{split}_{extractor}")
    return Path(root).expanduser() / f"{name}.npz"


def reference_pipeline(
    data_config: ml_collections.ConfigDict, split: str, batch_size: int
) -> tuple[Iterable[Mapping[str, np.ndarray]], int]:
    """One process's pass over the whole split, unflipped: (batches, number of images)."""
    from gencore.data import create_input_pipeline

    data_config = data_config.copy_and_resolve_references()
    with data_config.unlocked():
        data_config.random_flip = False
        data_config.train_fraction = 1.0
    pipeline = create_input_pipeline(
        data_config,
        global_batch_size=batch_size,
        seed=0,
        split=split,
        process_index=0,
        process_count=1,
    )
    return pipeline, pipeline.num_examples


def load_or_compute_reference_stats(
    data_config: ml_collections.ConfigDict,
    extractor: FeatureExtractor,
    split: str,
    path: str | os.PathLike | None = None,
    num_examples: int | None = None,
    batch_size: int = 250,
    overwrite: bool = False,
) -> ReferenceStats:
    """Loads the cached statistics of `split`, computing and caching them first if absent (or
    damaged).

    A cached file made with another extractor or split is an error, not silently reused.
    """
    path = (
        Path(path)
        if path
        else default_path(data_config.name, data_config.resolution, split, extractor.name)
    )
    if path.is_file() and not overwrite:
        try:
            stats = ReferenceStats.load(path)
        except tree_npz.DamagedFileError as error:
            logging.warning("%s Computing the statistics again.", error)
            return load_or_compute_reference_stats(data_config, extractor, split, path,
                                                   num_examples, batch_size, overwrite=True)
        if (stats.extractor, stats.split) != (extractor.name, split):
            raise ValueError(
                f"{path} holds statistics of {stats.describe()}, not of split '{split}' in the "
                f"{extractor.name} space; pass another path or overwrite."
            )
        return stats
    batches, split_size = reference_pipeline(data_config, split, batch_size)
    stats = compute_reference_stats(
        extractor,
        batches,
        dataset=data_config.name,
        split=split,
        resolution=data_config.resolution,
        num_examples=min(num_examples or split_size, split_size),
    )
    stats.save(path)
    return stats


def main(argv: list[str]) -> None:
    del argv
    flag = flags.FLAGS
    config = flag.config
    name = flag.extractor or ("digits_classifier" if config.data.name == "digits" else "inception")
    extractor = create_feature_extractor(
        name, inception_weights=config.eval.get("inception_weights") or None
    )
    split = flag.split or config.eval.get("reference_split", "train")
    path = (
        Path(flag.out)
        if flag.out
        else default_path(config.data.name, config.data.resolution, split, name)
    )
    stats = load_or_compute_reference_stats(
        config.data, extractor, split, path, flag.num_examples, flag.batch_size, flag.overwrite
    )
    print(f"Reference statistics of {stats.describe()}: {path}")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Model config (its data and eval parts).")
    flags.DEFINE_enum(
        "extractor",
        None,
        ["inception", "digits_classifier"],
        "Feature space (default: digits_classifier for the 'digits' data, else inception).",
    )
    flags.DEFINE_string("split", None, "Dataset split (default: config.eval.reference_split).")
    flags.DEFINE_integer("num_examples", None, "Images to use (default: the whole split).")
    flags.DEFINE_integer("batch_size", 250, "Images per feature-extraction batch.")
    flags.DEFINE_string("out", None, "Output .npz (default: see the module docstring).")
    flags.DEFINE_bool("overwrite", False, "Recompute even if the output exists.")
    flags.mark_flags_as_required(["config"])
    app.run(stop_on_error("reference_stats", main))
