r"""Evaluate a diffusion run's EMA weights as training writes checkpoints.

  python -m diffusion.eval --workdir=<train workdir> [--sampler=ddim] [--steps=50] \
      [--guidance=1,3] [--num_samples=1000] [--once | --step=N]

For every checkpoint (``gencore.checkpoint.follow_checkpoints``; ``--once``: the latest only;
``--step``: that one only)
and every guidance scale it draws ``--num_samples`` samples (labels cycling over the classes)
with the chosen sampler and number of respaced steps. On the embedded digits data it reports
the data-specific classifier's metrics (``gencore.digits_classifier``: FID/KID/precision/recall
in its feature space against all real digits at the model's resolution, and the class accuracy
of the samples); other datasets are not scored here yet. With ``config.eval.bpd_examples`` > 0
it adds the NLL in bits/dim (full T-step bound, DDPM Eq. 5) of that many examples of
``config.eval.bpd_split``.
Results go to ``<workdir>/eval/step_<N>.json`` and TensorBoard scalars in ``<workdir>/eval``.
"""

import json
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from diffusion import model as dmodel
from diffusion.eval_settings import bpd_example_count, check_eval_settings
from diffusion.likelihood import bits_per_dim
from diffusion.sampling import METHODS
from diffusion.train import restore_ema_params, run_config
from gencore import checkpoint, digits_classifier, metrics
from gencore.config_util import check_config_arguments
from gencore.console import say, setup_job_logging, stop_on_error
from gencore.data import create_input_pipeline
from gencore.feature_extractors import extract_features
from gencore.metric_writer import MetricWriter
from gencore.training import define_process_flags


def sample_batches(config: ml_collections.ConfigDict, params: Any, num_samples: int, *,
                   sampler: str, steps: int, guidance: float, seed: int = 0
                   ) -> Iterator[dict[str, np.ndarray]]:
    """Batches {'image', 'label'} of ``config.eval.batch_size`` samples; labels cycle."""
    batch = config.eval.batch_size
    classes = max(config.model.num_classes, 1)
    conditional = bool(config.model.num_classes)
    run = jax.jit(lambda p, k, y: dmodel.generate(
        config, p, k, batch, y if conditional else None, method=sampler, steps=steps,
        guidance=guidance))
    for i in range(-(-num_samples // batch)):
        labels = (np.arange(i * batch, (i + 1) * batch) % classes).astype(np.int32)
        key = jax.random.fold_in(jax.random.PRNGKey(seed), i)
        yield {"image": np.asarray(run(params, key, labels)), "label": labels}


def digits_scores(batches: Iterator[dict[str, np.ndarray]], num_samples: int, resolution: int
                  ) -> dict[str, float]:
    """Data-specific FID/KID/precision/recall against all real digits and class accuracy.

    The real digits come from the data pipeline at the samples' ``resolution``, so both sides
    reach the classifier through the same resize."""
    extractor = digits_classifier.load_or_train()
    real_images, _ = digits_classifier.load_digits_images(resolution)
    real = extract_features(extractor, [real_images])
    fake = extract_features(extractor, batches, num_samples)
    mu, sigma = metrics.gaussian_statistics(real.features)
    scores = metrics.sample_quality_metrics(
        fake.features, fake.logits, mu, sigma, real.features,
        kid_subset_size=min(1000, num_samples, len(real.features)))
    scores["class_accuracy"] = metrics.classification_accuracy(fake.logits, fake.labels)
    return scores


def heldout_bits_per_dim(config: ml_collections.ConfigDict, params: Any) -> float:
    """Mean NLL bound in bits/dim of ``config.eval.bpd_examples`` unflipped held-out examples
    (-1: the whole split)."""
    ev = config.eval
    pipeline = create_input_pipeline(config.data, global_batch_size=ev.batch_size,
                                     seed=0, split=ev.bpd_split, random_flip=False)
    examples = bpd_example_count(config, pipeline.num_examples)
    unet, param = dmodel.build_unet(config), dmodel.parameterization(config)
    schedule = dmodel.train_schedule(config)

    @jax.jit
    def nll(p, x, y, key):
        return bits_per_dim(lambda x_t, t: unet.apply({"params": p}, x_t, t, y), param,
                            schedule, x, key)["total"]

    totals, count = [], 0
    while count < examples:
        batch = next(pipeline)
        totals.append(np.asarray(nll(params, batch["image"], batch["label"],
                                     jax.random.PRNGKey(count))))
        count += len(batch["image"])
    return float(np.mean(np.concatenate(totals)[:examples]))


def evaluate(config: ml_collections.ConfigDict, params: Any, *, sampler: str, steps: int,
             guidances: list[float], num_samples: int) -> dict[str, float]:
    """Every figure for one set of EMA parameters, keys suffixed with the guidance scale."""
    results: dict[str, float] = {}
    for g in guidances:
        if config.data.name != "digits":
            logging.warning("sample metrics for %r need Inception weights; not computed here",
                            config.data.name)
            break
        batches = sample_batches(config, params, num_samples, sampler=sampler, steps=steps,
                                 guidance=g)
        for k, v in digits_scores(batches, num_samples, config.data.resolution).items():
            results[f"digits_{k}/guidance_{g:g}"] = v
    if config.eval.bpd_examples:
        results["bits_per_dim"] = heldout_bits_per_dim(config, params)
    return results


def check_bpd_split(config: ml_collections.ConfigDict) -> None:
    """With ``config.eval.bpd_examples`` > 0, fail before any sampling or compile if
    ``config.eval.bpd_split`` of the dataset cannot be read."""
    ev = config.eval
    if not ev.bpd_examples:
        return
    try:
        create_input_pipeline(config.data, global_batch_size=ev.batch_size, seed=0,
                              split=ev.bpd_split)
    except ValueError as e:
        raise ValueError(
            f"config.eval.bpd_split={ev.bpd_split!r} cannot be read ({e}). Set "
            f"config.eval.bpd_split to a split of {config.data.name!r}, or "
            "config.eval.bpd_examples=0 to skip bits/dim.") from e


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    workdir = f.workdir
    setup_job_logging(workdir, "eval", setup_process)
    config = run_config(workdir, None, f.config)
    ev = config.eval
    sampler, steps = f.sampler or ev.sampler, f.steps or ev.sample_steps
    guidances = [float(g) for g in (f.guidance or [ev.guidance])]
    num_samples = f.num_samples or ev.num_samples
    ev.batch_size = f.batch_size or ev.batch_size
    check_eval_settings(config, sampler=sampler, sample_steps=steps, guidance=guidances)
    check_bpd_split(config)
    out_dir = epath.Path(workdir) / "eval"
    writer = MetricWriter(str(out_dir), enabled=jax.process_index() == 0)
    checkpoint_steps = checkpoint.steps_to_evaluate(
        workdir, step=f.step, latest_only=f.once, poll_seconds=f.poll_seconds,
        timeout_seconds=f.timeout_seconds)
    for step, params in checkpoint.restored_steps(
            checkpoint_steps, lambda step: restore_ema_params(config, workdir, step),
            skip_unreadable=f.step is None):
        results = evaluate(config, params, sampler=sampler, steps=steps, guidances=guidances,
                           num_samples=num_samples)
        writer.write_scalars(step, results)
        if jax.process_index() == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            record = dict(step=step, sampler=sampler, sample_steps=steps, **results)
            (out_dir / f"step_{step:08d}.json").write_text(json.dumps(record, indent=1))
            say(json.dumps(record))
    writer.close()


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Training workdir.", required=True)
    config_flags.DEFINE_config_file("config", None, "Config (default: the saved one).")
    flags.DEFINE_enum("sampler", None, METHODS, "Sampler (default config.eval.sampler).")
    flags.DEFINE_integer("steps", None, "Respaced steps (default config.eval.sample_steps).")
    flags.DEFINE_list("guidance", None, "Guidance scales (default config.eval.guidance).")
    flags.DEFINE_integer("num_samples", None, "Samples (default config.eval.num_samples).")
    flags.DEFINE_integer("batch_size", None, "Default config.eval.batch_size.")
    flags.DEFINE_bool("once", False, "Evaluate the latest checkpoint only, then exit.")
    flags.DEFINE_integer("step", None, "Evaluate this checkpoint only, then exit.")
    flags.DEFINE_float("poll_seconds", 60.0, "Seconds between looks for new checkpoints.")
    flags.DEFINE_float("timeout_seconds", 3600.0, "Stop after this long without one.")
    setup_process = define_process_flags()
    check_config_arguments()
    app.run(stop_on_error("eval", main))
