"""Checks an eval job runs on its resolved config before sampling or compiling anything: what
both families need to score samples in the Inception space.

Each failure is a ``ValueError`` of one line that names the config field and the fix.
"""

from __future__ import annotations

import ml_collections

from gencore import inception, reference_stats
from gencore.data import create_input_pipeline

INCEPTION = "inception"


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces collapsed to single spaces."""
    return " ".join(str(text).split())


def check_inception_weights(config: ml_collections.ConfigDict) -> None:
    """The converted Inception weights must exist unless the data is the embedded digits
    (scored with the digits classifier)."""
    if config.data.name == "digits":
        return
    try:
        inception.resolve_weights_path(config.eval.get("inception_weights") or None)
    except inception.InceptionWeightsNotFoundError as error:
        raise ValueError(
            f"config.eval.inception_weights: Inception FID / IS of data.name="
            f"{config.data.name!r} need the converted weights. {one_line(error)}") from error


def check_reference_stats(config: ml_collections.ConfigDict) -> None:
    """The Inception statistics of ``config.eval.reference_split`` must be cached, or the
    split readable so that the job can compute them (``gencore.reference_stats``)."""
    if config.data.name == "digits":
        return
    split = config.eval.reference_split
    path = reference_stats.default_path(config.data.name, config.data.resolution, split,
                                        INCEPTION)
    if path.is_file():
        return
    try:
        create_input_pipeline(config.data, global_batch_size=1, seed=0, split=split,
                              process_index=0, process_count=1, random_flip=False)
    except ValueError as error:
        raise ValueError(
            f"config.eval.reference_split={split!r}: no reference statistics at {path} and "
            f"the split cannot be read to compute them ({one_line(error)}). Prepare the "
            f"dataset (config.data.data_dir), or where it is readable run `python -m "
            f"gencore.reference_stats --config=<this config> --split={split}` and copy the "
            f"file to {path} (or set ${reference_stats.CACHE_ENV_VAR} to its folder)."
        ) from error


def check_sample_scoring(config: ml_collections.ConfigDict) -> None:
    """Inception weights and reference statistics (or data to compute them) are at hand."""
    check_inception_weights(config)
    check_reference_stats(config)
