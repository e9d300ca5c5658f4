"""The diffusion eval settings of ``config.eval`` and the checks on them.

``sample_steps`` and ``guidance`` each hold one value or a tuple (one evaluation per value);
``bpd_examples`` is 0 (no bits/dim), -1 (the whole ``bpd_split``) or a count of its examples.
``check_eval_settings`` runs on the resolved config before any sampling or compile; each
failure is a ``ValueError`` of one line naming the field and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections

from diffusion.reverse import METHODS
from gencore.eval_checks import check_sample_scoring

ALL_EXAMPLES = -1
"""``config.eval.bpd_examples`` value for the whole split."""


def as_tuple(value: object) -> tuple:
    """A scalar as a 1-tuple; a list or tuple as a tuple."""
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def sample_step_counts(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """The respaced step counts of ``config.eval.sample_steps``, one evaluation each."""
    return as_tuple(config.eval.sample_steps)


def guidance_scales(config: ml_collections.ConfigDict) -> tuple[float, ...]:
    """The classifier-free guidance scales of ``config.eval.guidance``."""
    return tuple(float(g) for g in as_tuple(config.eval.guidance))


def sampling_settings(config: ml_collections.ConfigDict) -> list[dict[str, object]]:
    """The eval's settings {'sampler', 'steps', 'guidance'}: config.eval.sampler with every
    pair of ``sample_steps`` x ``guidance``."""
    return [{"sampler": config.eval.sampler, "steps": int(steps), "guidance": guidance}
            for steps in sample_step_counts(config) for guidance in guidance_scales(config)]


def bpd_example_count(config: ml_collections.ConfigDict, split_size: int) -> int:
    """How many examples of a ``split_size``-example split the bits/dim covers."""
    examples = config.eval.bpd_examples
    return split_size if examples == ALL_EXAMPLES else min(examples, split_size)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_sampling(config: ml_collections.ConfigDict, sampler: str,
                   sample_steps: Sequence[object], guidance: Sequence[object]) -> None:
    """Sampler name, step counts in [1, T] and guidance the model was trained for."""
    if sampler not in METHODS:
        raise ValueError(f"config.eval.sampler={sampler!r} (or --sampler) is not a sampler; "
                         f"set it to one of {', '.join(map(repr, METHODS))}.")
    num_steps = config.diffusion.num_steps
    for steps in sample_steps:
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_steps:
            raise ValueError(
                f"config.eval.sample_steps (or --steps) holds {steps!r}: each entry must be a "
                f"whole number of respaced steps in 1..T, T = config.diffusion.num_steps = "
                f"{num_steps} (T itself: the full chain).")
    for scale in guidance:
        if not _is_number(scale):
            raise ValueError(f"config.eval.guidance (or --guidance) holds {scale!r}: use "
                             "numbers (1: plain conditional sampling).")
        if scale == 1:
            continue
        if not config.model.num_classes:
            raise ValueError(
                f"config.eval.guidance (or --guidance) = {scale:g} on an unconditional model "
                "(config.model.num_classes = 0): classifier-free guidance needs class labels; "
                "set it to 1.")
        if not (config.model.get("null_class") and config.diffusion.label_drop_prob > 0):
            raise ValueError(
                f"config.eval.guidance (or --guidance) = {scale:g} needs a null class trained "
                "by label dropout (config.model.null_class=True and "
                "config.diffusion.label_drop_prob > 0 when training); this model has "
                f"null_class={config.model.get('null_class')}, label_drop_prob="
                f"{config.diffusion.label_drop_prob}: set the guidance to 1.")


def check_bpd_examples(config: ml_collections.ConfigDict) -> None:
    """``config.eval.bpd_examples`` is 0, -1 or a positive count."""
    examples = config.eval.bpd_examples
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < ALL_EXAMPLES:
        raise ValueError(f"config.eval.bpd_examples={examples!r}: use 0 (no bits/dim), "
                         f"{ALL_EXAMPLES} (the whole config.eval.bpd_split) or a positive "
                         "count of its examples.")


def check_eval_settings(config: ml_collections.ConfigDict) -> None:
    """Every check of a diffusion eval job's settings (``--sampler``, ``--steps`` and
    ``--guidance`` are already in ``config.eval``; whether ``bpd_split`` can be read is
    `diffusion.eval.check_bpd_split`'s)."""
    check_sampling(config, config.eval.sampler, sample_step_counts(config),
                   as_tuple(config.eval.guidance))
    check_bpd_examples(config)
    check_sample_scoring(config)
