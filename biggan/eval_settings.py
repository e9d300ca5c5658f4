"""Checks the BigGAN eval job runs on its resolved config before building or compiling
anything; each failure is a ``ValueError`` of one line naming the field and the fix."""

from __future__ import annotations

import ml_collections

from gencore.eval_checks import check_sample_scoring


def check_truncations(truncations: object) -> None:
    """``config.eval.truncations``: a sequence of resampling thresholds > 0, or None entries
    (untruncated z, Table 2 'w/o truncation')."""
    if not isinstance(truncations, list | tuple) or not truncations:
        raise ValueError(f"config.eval.truncations={truncations!r}: use a non-empty tuple of "
                         "thresholds > 0 and/or None (untruncated), e.g. (None, 0.5, 1.0).")
    for t in truncations:
        if t is None:
            continue
        if isinstance(t, bool) or not isinstance(t, int | float) or not t > 0:
            raise ValueError(
                f"config.eval.truncations holds {t!r}: each entry must be a threshold > 0 (the "
                "|z| above which entries are redrawn) or None for untruncated z.")


def check_eval_config(config: ml_collections.ConfigDict) -> None:
    """Every check of a BigGAN eval job."""
    check_truncations(config.eval.truncations)
    check_sample_scoring(config)
