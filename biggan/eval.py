r"""The BigGAN eval job: follows a train job's checkpoints and scores the EMA generator.

    python -m biggan.eval --config=configs/biggan/digits.py --workdir=/tmp/run [--step=N]
        [--eval_dir=DIR] [--untrained]

For each complete checkpoint (``gencore.checkpoint.follow_checkpoints``, read-only, never a
half-written one; ``--step`` evaluates that one and exits) and each threshold of
``config.eval.truncations``: standing statistics of the EMA weights at that truncation
(Appendix C.1, ``biggan.standing_stats``), then ``config.eval.num_samples`` samples (classes
balanced) scored in every available feature space:
- 'inception' (weights from config.eval.inception_weights or $FID_INCEPTION_WEIGHTS): FID, IS,
  KID, precision / recall against the cached reference statistics of
  ``config.eval.reference_split``;
- 'digits_classifier' (always for the 'digits' data): the same metrics in the digits CNN's
  feature space plus the share of samples of class y classified as y. DATA-SPECIFIC: not
  comparable with Inception FID / IS.

Writes, under ``--eval_dir`` (default <workdir>/eval): TensorBoard scalars
'<space>/<metric>/trunc_<t>', ``metrics_<step>.json`` (one entry per truncation),
``truncation_curve_<step>.png`` (IS vs FID over the sweep, Figure 17) and ``best_fid.json``
pointing to the checkpoint and truncation of the lowest FID so far (in the first space).
``--untrained``: evaluate a freshly initialised state (step 0 of config.train.seed) instead.
Runs on any device count: statistics and samples do not depend on it.
"""

import json
from collections.abc import Iterator
from typing import Any

import jax
import matplotlib
import ml_collections
import numpy as np
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from biggan import latents, standing_stats
from biggan.eval_settings import check_eval_config
from biggan.train_step import TrainState, create_train_state
from gencore import checkpoint, feature_extractors, metrics, reference_stats, sharding
from gencore.config_util import check_config_arguments
from gencore.console import say, setup_job_logging, stop_on_error
from gencore.inception import InceptionWeightsNotFoundError
from gencore.metric_writer import MetricWriter
from gencore.training import define_process_flags

matplotlib.use("Agg")

BEST_FILE = "best_fid.json"


def feature_spaces(config: ml_collections.ConfigDict) -> list[Any]:
    """The extractors to score in: Inception when its weights exist; the digits classifier
    for the 'digits' data. Fails with the weights instructions when neither applies."""
    spaces = []
    try:
        spaces.append(feature_extractors.create_feature_extractor(
            "inception", inception_weights=config.eval.get("inception_weights") or None))
    except InceptionWeightsNotFoundError as error:
        if config.data.name != "digits":
            raise
        logging.info("No Inception metrics: %s", error)
        say("No Inception weights configured: digits-classifier metrics only (how to add "
            "Inception FID / IS: see the log).")
    if config.data.name == "digits":
        spaces.append(feature_extractors.create_feature_extractor("digits_classifier"))
    return spaces


def eval_truncations(config: ml_collections.ConfigDict) -> list[float | None]:
    """config.eval.truncations (None: untruncated), or [None] when the training latent has no
    normal part."""
    if config.train.latent not in latents.TRUNCATABLE:
        logging.warning("Latent %r cannot be truncated; evaluating untruncated only.",
                        config.train.latent)
        return [None]
    return [None if t is None else float(t) for t in config.eval.truncations]


def restore_train_state(config: ml_collections.ConfigDict, workdir: str, step: int,
                        mesh: Any) -> TrainState:
    """The training state of checkpoint ``step`` of ``workdir`` as host arrays."""
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                      jax.eval_shape(lambda: create_train_state(config, mesh)))
    with checkpoint.Checkpointer(workdir, read_only=True) as ckpt:
        return ckpt.restore(abstract, step)


def restore_generator(config: ml_collections.ConfigDict, workdir: str, step: int,
                      mesh: Any) -> tuple[Any, Any]:
    """(ema_params, g_state) of checkpoint ``step`` of ``workdir`` as host arrays."""
    state = restore_train_state(config, workdir, step, mesh)
    return state.ema_params, state.g_state


def generate_batches(config: ml_collections.ConfigDict, sample: standing_stats.Sampler,
                     params: Any, g_state: Any, truncation: float | None, key: jax.Array,
                     mesh: Any) -> Iterator[dict[str, jax.Array]]:
    """config.eval.num_samples samples of ``sample`` in batches {'image', 'label'}; labels cycle
    over the classes, z from config.train.latent at ``truncation``."""
    cfg, batch = config.model, config.eval.batch_size
    placement = sharding.batch_sharded(mesh)
    draw = jax.jit(lambda k, t: latents.draw_z(config.train.latent, k, (batch, cfg.z_dim), t),
                   out_shardings=placement)
    for i in range(-(-config.eval.num_samples // batch)):
        z = draw(jax.random.fold_in(key, i), truncation)
        y = (np.arange(i * batch, (i + 1) * batch) % cfg.num_classes).astype(np.int32)
        y = jax.device_put(y, placement)
        yield {"image": sample(params, g_state, z, y), "label": y}


def score(extractor: Any, reference: reference_stats.ReferenceStats, batches: Any,
          num_samples: int) -> dict[str, float]:
    """FID, IS, KID, precision / recall (and class accuracy for a data-specific classifier of
    the model's classes) of the sampled batches in ``extractor``'s space."""
    fake = feature_extractors.extract_features(extractor, batches, num_samples)
    result = metrics.sample_quality_metrics(
        fake.features, fake.logits, reference.mu, reference.sigma, reference.features,
        kid_subset_size=min(1000, len(fake.features), len(reference.features)))
    if extractor.data_specific:
        result["class_accuracy"] = metrics.classification_accuracy(fake.logits, fake.labels)
    return result


def evaluate(config: ml_collections.ConfigDict, params: Any, g_state: Any, step: int,
             spaces: list[Any], references: list[Any], mesh: Any) -> dict[str, Any]:
    """Metrics of (params, g_state) at every eval truncation: {'step', 'feature_spaces',
    'truncations': [{'truncation', '<space>': {metric: value}}]}."""
    ev = config.eval
    sharding.check_batch_divisible(ev.batch_size, mesh, "config.eval.batch_size")
    key = jax.random.PRNGKey(config.train.seed + 2)
    stats_key, sample_key = jax.random.split(key)
    compute_stats = standing_stats.make_standing_stats_fn(
        config.model, ev.standing_stats_passes, ev.batch_size, mesh, config.train.latent)
    sample = standing_stats.make_sampler(config.model)
    entries = []
    for truncation in eval_truncations(config):
        stats = compute_stats(params, g_state, stats_key, truncation)
        state = standing_stats.with_standing_stats(g_state, stats)
        entry: dict[str, Any] = {"truncation": truncation}
        for extractor, reference in zip(spaces, references, strict=True):
            batches = generate_batches(config, sample, params, state, truncation, sample_key,
                                       mesh)
            entry[extractor.name] = score(extractor, reference, batches, ev.num_samples)
        say(f"step {step} truncation {truncation}: " + ", ".join(
            f"{space}: {summary_of(values)}" for space, values in entry.items()
            if isinstance(values, dict)))
        entries.append(entry)
    described = {e.name: {"data_specific": e.data_specific, "reference": r.describe()}
                 for e, r in zip(spaces, references, strict=True)}
    return {"step": step, "num_samples": ev.num_samples,
            "standing_stats_passes": ev.standing_stats_passes, "latent": config.train.latent,
            "feature_spaces": described, "truncations": entries}


def summary_of(values: dict[str, Any]) -> str:
    """'fid 41.2, precision 0.91, ...': the scalar figures of one feature space, rounded."""
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items() if isinstance(v, int | float))


def scalars(result: dict[str, Any]) -> dict[str, float]:
    """TensorBoard scalars '<space>/<metric>/trunc_<t>' of an ``evaluate`` result."""
    out = {}
    for entry in result["truncations"]:
        t = "none" if entry["truncation"] is None else f"{entry['truncation']:g}"
        for space in result["feature_spaces"]:
            out.update({f"{space}/{name}/trunc_{t}": value
                        for name, value in entry[space].items()})
    return out


def plot_truncation_curve(result: dict[str, Any], path: epath.Path) -> None:
    """IS vs FID over the truncation sweep (Figure 17), one curve per feature space."""
    import matplotlib.pyplot as plt

    spaces = list(result["feature_spaces"])
    fig, axes = plt.subplots(1, len(spaces), figsize=(5 * len(spaces), 4), squeeze=False)
    for ax, space in zip(axes[0], spaces, strict=True):
        fid = [e[space]["fid"] for e in result["truncations"]]
        inception_score = [e[space]["is_mean"] for e in result["truncations"]]
        ax.plot(inception_score, fid, "o-")
        for e, x, y in zip(result["truncations"], inception_score, fid, strict=True):
            ax.annotate(f"{e['truncation']}", (x, y), textcoords="offset points", xytext=(4, 4))
        label = " (data-specific)" if result["feature_spaces"][space]["data_specific"] else ""
        ax.set(xlabel=f"IS [{space}]{label}", ylabel=f"FID [{space}]{label}",
               title=f"step {result['step']}: truncation sweep")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def update_best(result: dict[str, Any], eval_dir: epath.Path) -> dict[str, Any]:
    """Rewrites ``best_fid.json`` if this step's lowest FID (first feature space) beats it."""
    space = next(iter(result["feature_spaces"]))
    best_entry = min(result["truncations"], key=lambda e: e[space]["fid"])
    candidate = {"step": result["step"], "truncation": best_entry["truncation"],
                 "fid": best_entry[space]["fid"], "feature_space": space}
    path = eval_dir / BEST_FILE
    if path.exists():
        current = json.loads(path.read_text())
        if current["feature_space"] == space and current["fid"] <= candidate["fid"]:
            return current
    path.write_text(json.dumps(candidate, indent=2))
    return candidate


def write_result(result: dict[str, Any], eval_dir: epath.Path, writer: Any) -> None:
    """JSON, TensorBoard scalars, the truncation curve and the best-FID pointer of one step."""
    step = result["step"]
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / f"metrics_{step:08d}.json").write_text(json.dumps(result, indent=2))
    writer.write_scalars(step, scalars(result))
    writer.flush()
    plot_truncation_curve(result, eval_dir / f"truncation_curve_{step:08d}.png")
    update_best(result, eval_dir)


def run_eval(config: ml_collections.ConfigDict, workdir: str, eval_dir: str | None = None,
             step: int | None = None, untrained: bool = False, poll_seconds: float = 60.0,
             timeout_seconds: float = 3600.0) -> list[dict[str, Any]]:
    """Evaluate ``step`` (or a fresh state if ``untrained``, or every checkpoint as it appears)
    and write the results; returns them."""
    steps = [] if untrained else checkpoint.steps_to_evaluate(
        workdir, step=step, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds)
    mesh = sharding.make_mesh()
    spaces = feature_spaces(config)
    references = [reference_stats.load_or_compute_reference_stats(
        config.data, e, config.eval.reference_split) for e in spaces]
    out = epath.Path(eval_dir) if eval_dir else epath.Path(workdir) / "eval"
    writer = MetricWriter(str(out), enabled=jax.process_index() == 0)
    results = []

    def evaluate_and_write(params: Any, g_state: Any, at: int) -> None:
        result = evaluate(config, params, g_state, at, spaces, references, mesh)
        if jax.process_index() == 0:
            write_result(result, out, writer)
        results.append(result)

    if untrained:
        state = create_train_state(config, mesh)
        evaluate_and_write(state.ema_params, state.g_state, 0)
    else:
        for at, (params, g_state) in checkpoint.restored_steps(
                steps, lambda at: restore_generator(config, workdir, at, mesh),
                skip_unreadable=step is None):
            evaluate_and_write(params, g_state, at)
    writer.close()
    return results


def main(argv: list[str]) -> None:
    del argv
    flag = flags.FLAGS
    setup_job_logging(flag.workdir, "eval", setup_process)
    check_eval_config(flag.config)
    run_eval(flag.config, flag.workdir, flag.eval_dir, flag.step, flag.untrained,
             flag.poll_seconds, flag.timeout_seconds)


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "BigGAN config file[:variant].")
    flags.DEFINE_string("workdir", None, "The train job's workdir (read only).")
    flags.DEFINE_string("eval_dir", None, "Output directory (default <workdir>/eval).")
    flags.DEFINE_integer("step", None, "Evaluate this checkpoint and exit.")
    flags.DEFINE_bool("untrained", False, "Evaluate a freshly initialised G (step 0).")
    flags.DEFINE_float("poll_seconds", 60.0, "Seconds between checks for new checkpoints.")
    flags.DEFINE_float("timeout_seconds", 3600.0, "Stop after this long without a checkpoint.")
    flags.mark_flags_as_required(["config", "workdir"])
    setup_process = define_process_flags()
    check_config_arguments()
    app.run(stop_on_error("eval", main))
