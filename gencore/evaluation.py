r"""The eval job of every model family: follow a run's checkpoints and score its samples.

    python -m biggan.eval | diffusion.eval --workdir=RUN [--config=FILE[:variant]]
        [--step=N | --latest] [--eval_dir=DIR] [--num_samples=N] [--batch_size=N]
        [--untrained] [--multihost] [the family's flags]

Checkpoints: by default every complete checkpoint in order, as training writes them
(`gencore.checkpoint.follow_checkpoints`, never a half-written one); ``--step`` that one,
``--latest`` the newest one only. Config: ``--config`` or the one saved with the newest
checkpoint (`gencore.checkpoint.resolve_run`).

For each checkpoint and each *setting* of the family (BigGAN: a truncation; diffusion: a
sampler, a number of respaced steps and a guidance scale) ``config.eval.num_samples`` samples
are drawn, sample i from the key fold_in(PRNGKey(train.seed + 2), i) with class
i % num_classes, in global batches of ``config.eval.batch_size`` split over every device of
every process: the evaluated set is the same on 1 device, 8 devices or 2 processes x 4. Each
process extracts the features of its own rows; the features are gathered from every process
and scored in every feature space:
- 'inception' (weights from config.eval.inception_weights or $FID_INCEPTION_WEIGHTS): FID, IS,
  KID, precision / recall against the cached reference statistics of
  ``config.eval.reference_split`` (`gencore.reference_stats`);
- 'digits_classifier' (always for the 'digits' data): the same metrics in the digits CNN's
  feature space plus the share of samples of class y classified as y. DATA-SPECIFIC: not
  comparable with Inception FID / IS.

Process 0 writes, under ``--eval_dir`` (default <workdir>/eval), for each step::

    metrics_<step>.json  {"step", "num_samples", "details": {family facts},
                          "feature_spaces": {space: {"data_specific", "reference"}},
                          "settings": [{"setting": {...}, "<space>": {metric: value}}],
                          "step_metrics": {name: value}}
    TensorBoard scalars  '<space>/<metric>/<setting name>' and '<step metric>'
    best_fid.json        {"step", "setting", "fid", "feature_space"}: the lowest FID so far in
                         the first feature space

plus the family's figures (BigGAN: the truncation curve).
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from etils import epath
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from ml_collections import config_flags

from gencore import checkpoint, feature_extractors, metrics, reference_stats, sharding
from gencore.config_util import check_config_arguments
from gencore.console import say, setup_job_logging, stop_on_error
from gencore.feature_extractors import FeatureExtractor, FeatureSet
from gencore.inception import InceptionWeightsNotFoundError
from gencore.metric_writer import MetricWriter
from gencore.sample_keys import example_keys
from gencore.training import define_process_flags

BEST_FILE = "best_fid.json"
SAMPLE_SEED_OFFSET = 2
"""Samples are drawn from PRNGKey(config.train.seed + SAMPLE_SEED_OFFSET)."""

DrawFn = Callable[[jax.Array, jax.Array], jax.Array]
"""(keys [B], labels [B] int32, both split over the mesh) -> images [B, R, R, 3] in [-1, 1];
image b depends only on (keys[b], labels[b])."""


@dataclass(frozen=True)
class ModelEval:
    """What a model family contributes to an evaluation.

    create_state() -> a fresh train state (the restore template; ``--untrained`` evaluates it);
    weights(state) -> what sampling needs (e.g. the EMA parameters);
    settings: the sampling settings to score, e.g. [{'truncation': 0.5}, ...];
    sampler(weights, setting) -> the `DrawFn` of that setting;
    details: facts about how samples were drawn, written into every result;
    step_metrics(weights) -> figures of the checkpoint that do not depend on a setting;
    write_figures(result, eval_dir): extra files of one result.
    """

    create_state: Callable[[], Any]
    weights: Callable[[Any], Any]
    settings: Sequence[dict[str, Any]]
    sampler: Callable[[Any, dict[str, Any]], DrawFn]
    details: dict[str, Any] = field(default_factory=dict)
    step_metrics: Callable[[Any], dict[str, float]] | None = None
    write_figures: Callable[[dict[str, Any], epath.Path], None] | None = None


def feature_spaces(config: ml_collections.ConfigDict) -> list[FeatureExtractor]:
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


def local_rows(x: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """(row indices [n] in ``x``, rows [n, ...]) of the rows of a batch-split array that this
    process holds, in row order."""
    shards: dict[int, np.ndarray] = {}
    for shard in x.addressable_shards:
        shards.setdefault(shard.index[0].start or 0, np.asarray(shard.data))
    starts = sorted(shards)
    return (np.concatenate([s + np.arange(len(shards[s])) for s in starts]),
            np.concatenate([shards[s] for s in starts]))


def sample_features(draw: DrawFn, extractors: Sequence[FeatureExtractor], *,
                    key: np.ndarray, num_samples: int, batch_size: int, num_classes: int,
                    mesh: Mesh) -> list[FeatureSet]:
    """Features of samples 0 .. num_samples - 1 of ``draw`` in each extractor's space, in
    sample order, on every process. Sample i has the key fold_in(key, i) and (conditional
    models, num_classes > 0) the label i % num_classes; batches are split over ``mesh``, each
    process extracts the features of the rows it holds on its own devices, then the rows of
    every process are gathered."""
    placement = sharding.batch_sharded(mesh)
    local_placement = sharding.batch_sharded(sharding.make_mesh(jax.local_devices()))
    classes = max(num_classes, 1)

    @jax.jit
    def keys_and_labels(start):
        indices = start + jnp.arange(batch_size)
        keys = example_keys(key, indices)
        labels = (indices % classes).astype(jnp.int32)
        return (jax.lax.with_sharding_constraint(keys, placement),
                jax.lax.with_sharding_constraint(labels, placement))

    ids, features = [], [([], []) for _ in extractors]
    for start in range(0, num_samples, batch_size):
        images = draw(*keys_and_labels(np.int32(start)))
        rows_in_batch, rows = local_rows(images)
        ids.append(start + rows_in_batch)
        placed = jax.device_put(rows, local_placement)
        for extractor, (pool, logits) in zip(extractors, features, strict=True):
            f, lg = jax.device_get(extractor.features(placed))
            pool.append(np.asarray(f, np.float32))
            logits.append(np.asarray(lg, np.float32))
    all_ids = np.asarray(multihost_utils.process_allgather(np.concatenate(ids), tiled=True))
    order = np.argsort(all_ids)[:num_samples]
    labels = all_ids[order] % classes if num_classes else None

    def gathered(parts: list[np.ndarray]) -> np.ndarray:
        return np.asarray(multihost_utils.process_allgather(np.concatenate(parts),
                                                            tiled=True))[order]

    return [FeatureSet(gathered(pool), gathered(logits), labels) for pool, logits in features]


def score(extractor: FeatureExtractor, reference: reference_stats.ReferenceStats,
          fake: FeatureSet) -> dict[str, float]:
    """FID, IS, KID, precision / recall (and, for a data-specific classifier of labelled
    samples, the class accuracy) of ``fake`` in ``extractor``'s space."""
    result = metrics.sample_quality_metrics(
        fake.features, fake.logits, reference.mu, reference.sigma, reference.features,
        kid_subset_size=min(1000, len(fake.features), len(reference.features)))
    if extractor.data_specific and fake.labels is not None:
        result["class_accuracy"] = metrics.classification_accuracy(fake.logits, fake.labels)
    return result


def setting_name(setting: dict[str, Any]) -> str:
    """'truncation_0.5' or 'sampler_ddim,steps_50,guidance_3': a setting in scalar names."""
    def value(v: Any) -> str:
        return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    return ",".join(f"{k}_{value(v)}" for k, v in setting.items())


def summary_of(values: dict[str, Any]) -> str:
    """'fid 41.2, precision 0.91, ...': the scalar figures of one feature space, rounded."""
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items() if isinstance(v, int | float))


def evaluate(config: ml_collections.ConfigDict, model: ModelEval, weights: Any, step: int,
             spaces: Sequence[FeatureExtractor],
             references: Sequence[reference_stats.ReferenceStats], mesh: Mesh
             ) -> dict[str, Any]:
    """The result of one checkpoint (module docstring): every setting in every space."""
    ev = config.eval
    key = np.asarray(jax.random.PRNGKey(config.train.seed + SAMPLE_SEED_OFFSET))
    entries = []
    for setting in model.settings:
        fakes = sample_features(model.sampler(weights, setting), spaces, key=key,
                                num_samples=ev.num_samples, batch_size=ev.batch_size,
                                num_classes=config.model.num_classes, mesh=mesh)
        entry: dict[str, Any] = {"setting": dict(setting)}
        for extractor, reference, fake in zip(spaces, references, fakes, strict=True):
            entry[extractor.name] = score(extractor, reference, fake)
        say(f"step {step} {setting_name(setting)}: " + "; ".join(
            f"{e.name}: {summary_of(entry[e.name])}" for e in spaces))
        entries.append(entry)
    result = {
        "step": step, "num_samples": ev.num_samples, "details": dict(model.details),
        "feature_spaces": {e.name: {"data_specific": e.data_specific, "reference": r.describe()}
                           for e, r in zip(spaces, references, strict=True)},
        "settings": entries,
        "step_metrics": model.step_metrics(weights) if model.step_metrics else {},
    }
    if result["step_metrics"]:
        say(f"step {step}: {summary_of(result['step_metrics'])}")
    return result


def scalars(result: dict[str, Any]) -> dict[str, float]:
    """TensorBoard scalars '<space>/<metric>/<setting name>' and the step metrics of a result."""
    out = dict(result["step_metrics"])
    for entry in result["settings"]:
        name = setting_name(entry["setting"])
        for space in result["feature_spaces"]:
            out.update({f"{space}/{metric}/{name}": value
                        for metric, value in entry[space].items()})
    return out


def update_best(result: dict[str, Any], eval_dir: epath.Path) -> dict[str, Any]:
    """Rewrites ``best_fid.json`` if this step's lowest FID (first feature space) beats it."""
    space = next(iter(result["feature_spaces"]))
    best_entry = min(result["settings"], key=lambda e: e[space]["fid"])
    candidate = {"step": result["step"], "setting": best_entry["setting"],
                 "fid": best_entry[space]["fid"], "feature_space": space}
    path = eval_dir / BEST_FILE
    if path.exists():
        current = json.loads(path.read_text())
        if current["feature_space"] == space and current["fid"] <= candidate["fid"]:
            return current
    path.write_text(json.dumps(candidate, indent=2))
    return candidate


def write_result(result: dict[str, Any], model: ModelEval, eval_dir: epath.Path,
                 writer: MetricWriter) -> None:
    """JSON, TensorBoard scalars, the family's figures and the best-FID pointer of one step."""
    step = result["step"]
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / f"metrics_{step:08d}.json").write_text(json.dumps(result, indent=2))
    writer.write_scalars(step, scalars(result))
    writer.flush()
    if model.write_figures:
        model.write_figures(result, eval_dir)
    update_best(result, eval_dir)


ModelEvalBuilder = Callable[[ml_collections.ConfigDict, Mesh], ModelEval]
"""(config, mesh) -> the family's `ModelEval`; checks the family's config fields first."""


def run_eval(config: ml_collections.ConfigDict, workdir: str, build: ModelEvalBuilder, *,
             eval_dir: str | None = None, step: int | None = None, latest: bool = False,
             untrained: bool = False, poll_seconds: float = 60.0,
             timeout_seconds: float = 3600.0, mesh: Mesh | None = None
             ) -> list[dict[str, Any]]:
    """Evaluates ``step``, the latest checkpoint, a fresh state (``untrained``) or every
    checkpoint as it appears, on ``mesh`` (default: every device); process 0 writes the
    results. Returns them."""
    mesh = mesh or sharding.make_mesh()
    sharding.check_batch_divisible(config.eval.batch_size, mesh.devices.size,
                                   "config.eval.batch_size")
    model = build(config, mesh)
    steps = [] if untrained else checkpoint.steps_to_evaluate(
        workdir, step=step, latest_only=latest, poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds)
    spaces = feature_spaces(config)
    references = [reference_stats.load_or_compute_reference_stats(
        config.data, e, config.eval.reference_split) for e in spaces]
    out = epath.Path(eval_dir) if eval_dir else epath.Path(workdir) / "eval"
    writer = MetricWriter(str(out), enabled=jax.process_index() == 0)
    results = []

    def evaluate_and_write(weights: Any, at: int) -> None:
        result = evaluate(config, model, weights, at, spaces, references, mesh)
        if jax.process_index() == 0:
            write_result(result, model, out, writer)
        results.append(result)

    if untrained:
        evaluate_and_write(model.weights(model.create_state()), 0)
    else:
        for at, weights in checkpoint.restored_steps(
                steps, lambda at: model.weights(checkpoint.restore_read_only(
                    workdir, model.create_state, at, sharding.replicated(mesh))),
                skip_unreadable=step is None):
            evaluate_and_write(weights, at)
    writer.close()
    return results


def job_config(workdir: str, config: ml_collections.ConfigDict | None, step: int | None
               ) -> ml_collections.ConfigDict:
    """``config``, else the one saved with checkpoint ``step`` (default: the newest)."""
    if config is not None:
        return config
    try:
        return checkpoint.resolve_run(workdir, step)[1]
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} Pass --config=FILE to evaluate before the first "
                                "checkpoint (or a fresh state with --untrained).") from error


def set_eval_field(config: ml_collections.ConfigDict, name: str, value: Any) -> None:
    """config.eval.<name> = value, also where the value's type differs (a tuple for an int)."""
    with config.unlocked():
        if name in config.eval:
            del config.eval[name]
        config.eval[name] = value


def eval_main(build: ModelEvalBuilder,
              configure: Callable[[ml_collections.ConfigDict], None] | None = None) -> None:
    """A family's eval job (module docstring): defines the shared flags, then runs
    `run_eval` with ``build``; ``configure(config)`` applies the family's own flags. Call it
    under ``__main__`` after defining those flags."""
    config_flag = config_flags.DEFINE_config_file(
        "config", None, "Config file[:variant] (default: the one saved with the checkpoint).")
    workdir = flags.DEFINE_string("workdir", None, "The train job's workdir (read only).",
                                  required=True)
    eval_dir = flags.DEFINE_string("eval_dir", None, "Output directory (default <workdir>/eval).")
    step = flags.DEFINE_integer("step", None, "Evaluate this checkpoint only, then exit.")
    latest = flags.DEFINE_bool("latest", False,
                               "Evaluate the newest complete checkpoint only, then exit.")
    untrained = flags.DEFINE_bool("untrained", False, "Evaluate a freshly initialised state "
                                  "(step 0 of config.train.seed).")
    num_samples = flags.DEFINE_integer("num_samples", None,
                                       "Samples per setting (default config.eval.num_samples).")
    batch_size = flags.DEFINE_integer("batch_size", None,
                                      "Global batch (default config.eval.batch_size).")
    poll_seconds = flags.DEFINE_float("poll_seconds", 60.0,
                                      "Seconds between looks for new checkpoints.")
    timeout_seconds = flags.DEFINE_float("timeout_seconds", 3600.0,
                                         "Stop after this long without a new checkpoint.")
    flags.register_multi_flags_validator(
        ["step", "latest", "untrained"],
        lambda f: (f["step"] is not None) + f["latest"] + f["untrained"] <= 1,
        "Pass at most one of --step, --latest and --untrained.")
    setup_process = define_process_flags()

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        setup_job_logging(workdir.value, "eval", setup_process)
        if untrained.value and config_flag.value is None:
            raise app.UsageError("--untrained needs --config=FILE.")
        config = job_config(workdir.value, config_flag.value, step.value)
        for name, value in (("num_samples", num_samples.value), ("batch_size", batch_size.value)):
            if value is not None:
                set_eval_field(config, name, value)
        if configure:
            configure(config)
        run_eval(config, workdir.value, build, eval_dir=eval_dir.value, step=step.value,
                 latest=latest.value, untrained=untrained.value,
                 poll_seconds=poll_seconds.value, timeout_seconds=timeout_seconds.value)

    check_config_arguments()
    app.run(stop_on_error("eval", main))
