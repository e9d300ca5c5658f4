r"""The BigGAN eval job: follows a train job's checkpoints and scores the EMA generator.

    python -m biggan.eval --workdir=/tmp/run [--config=configs/biggan/digits.py]
        [--step=N | --latest | --untrained] [--eval_dir=DIR] [--num_samples=N] [--batch_size=N]

The shared evaluation (`gencore.evaluation`: checkpoints, feature spaces, reference statistics,
metrics, metrics_<step>.json, TensorBoard scalars, best_fid.json) with one setting per
threshold of ``config.eval.truncations`` (``{'truncation': t}``): standing statistics of the EMA
weights at that truncation (Appendix C.1, ``biggan.standing_stats``), then G in inference mode
on z drawn from config.train.latent at t, sample i's z from its own key. Also writes
``truncation_curve_<step>.png`` (IS vs FID over the sweep, Figure 17). Statistics and samples
do not depend on the device or process count.
"""

from functools import partial
from typing import Any

import jax
import matplotlib
import ml_collections
from absl import logging
from etils import epath
from jax.sharding import Mesh

from biggan import latents, standing_stats
from biggan.eval_settings import check_eval_config
from biggan.train_step import create_train_state
from gencore.evaluation import SAMPLE_SEED_OFFSET, DrawFn, ModelEval, eval_main

matplotlib.use("Agg")

STATS_SEED_OFFSET = SAMPLE_SEED_OFFSET + 1
"""Standing statistics use PRNGKey(config.train.seed + STATS_SEED_OFFSET)."""


def eval_truncations(config: ml_collections.ConfigDict) -> list[float | None]:
    """config.eval.truncations (None: untruncated), or [None] when the training latent has no
    normal part."""
    if config.train.latent not in latents.TRUNCATABLE:
        logging.warning("Latent %r cannot be truncated; evaluating untruncated only.",
                        config.train.latent)
        return [None]
    return [None if t is None else float(t) for t in config.eval.truncations]


def model_eval(config: ml_collections.ConfigDict, mesh: Mesh) -> ModelEval:
    """BigGAN's part of the evaluation: the EMA G with standing statistics per truncation."""
    check_eval_config(config)
    ev, cfg = config.eval, config.model
    compute_stats = standing_stats.make_standing_stats_fn(
        cfg, ev.standing_stats_passes, ev.batch_size, mesh, config.train.latent)
    stats_key = jax.random.PRNGKey(config.train.seed + STATS_SEED_OFFSET)
    generate = standing_stats.make_sampler(cfg)

    @partial(jax.jit, static_argnums=1)
    def draw_z(keys, truncation):
        return jax.vmap(lambda k: latents.draw_z(config.train.latent, k, (cfg.z_dim,),
                                                 truncation))(keys)

    def sampler(weights: tuple[Any, Any], setting: dict[str, Any]) -> DrawFn:
        params, g_state = weights
        truncation = setting["truncation"]
        stats = compute_stats(params, g_state, stats_key, truncation)
        state = standing_stats.with_standing_stats(g_state, stats)
        return lambda keys, labels: generate(params, state, draw_z(keys, truncation), labels)

    return ModelEval(
        create_state=lambda: create_train_state(config, mesh),
        weights=lambda state: (state.ema_params, state.g_state),
        settings=[{"truncation": t} for t in eval_truncations(config)],
        sampler=sampler,
        details={"standing_stats_passes": ev.standing_stats_passes,
                 "latent": config.train.latent},
        write_figures=lambda result, eval_dir: plot_truncation_curve(
            result, eval_dir / f"truncation_curve_{result['step']:08d}.png"),
    )


def plot_truncation_curve(result: dict[str, Any], path: epath.Path) -> None:
    """IS vs FID over the truncation sweep (Figure 17), one curve per feature space; the
    thresholds joined in order, the untruncated entry as a star."""
    import matplotlib.pyplot as plt

    spaces = list(result["feature_spaces"])
    entries = result["settings"]
    swept = sorted((e for e in entries if e["setting"]["truncation"] is not None),
                   key=lambda e: e["setting"]["truncation"])
    untruncated = [e for e in entries if e["setting"]["truncation"] is None]
    fig, axes = plt.subplots(1, len(spaces), figsize=(5 * len(spaces), 4), squeeze=False)
    for ax, space in zip(axes[0], spaces, strict=True):
        for points, style in ((swept, "o-"), (untruncated, "*")):
            ax.plot([e[space]["is_mean"] for e in points], [e[space]["fid"] for e in points],
                    style, color="C0", markersize=10 if style == "*" else 6)
        for e in entries:
            t = e["setting"]["truncation"]
            ax.annotate("none" if t is None else f"{t:g}", (e[space]["is_mean"], e[space]["fid"]),
                        textcoords="offset points", xytext=(4, 4))
        label = " (data-specific)" if result["feature_spaces"][space]["data_specific"] else ""
        ax.set(xlabel=f"IS [{space}]{label}", ylabel=f"FID [{space}]{label}",
               title=f"step {result['step']}: truncation sweep")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


if __name__ == "__main__":
    eval_main(model_eval)
