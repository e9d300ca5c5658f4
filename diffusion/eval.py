r"""The diffusion eval job: follows a train job's checkpoints and scores the EMA weights.

    python -m diffusion.eval --workdir=<train workdir> [--config=FILE] [--sampler=ddim]
        [--steps=50,250] [--guidance=1,3] [--step=N | --latest] [--num_samples=N]

The shared evaluation (`gencore.evaluation`: checkpoints, feature spaces (Inception when its
weights are configured, the data-specific digits classifier on the digits), reference
statistics, metrics, metrics_<step>.json, TensorBoard scalars, best_fid.json) with one setting
per pair of respaced step count and guidance scale (``diffusion.eval_settings.sampling_settings``:
config.eval.sampler, sample_steps x guidance, overridden by ``--sampler``, ``--steps`` and
``--guidance``): the sampler draws sample i's x_T and noise from its own key. With
``config.eval.bpd_examples`` != 0 each step also gets the NLL in bits/dim (full T-step bound,
DDPM Eq. 5) of that many examples of ``config.eval.bpd_split`` (-1: all of it) ('bits_per_dim' in
step_metrics).
"""

from typing import Any

import jax
import ml_collections
import numpy as np
from absl import flags
from jax.sharding import Mesh

from diffusion import model as diffusion_model
from diffusion.eval_settings import bpd_example_count, check_eval_settings, sampling_settings
from diffusion.likelihood import bits_per_dim
from diffusion.reverse import METHODS
from diffusion.train_step import create_train_state
from gencore.config_util import parse_numbers
from gencore.data import create_input_pipeline
from gencore.evaluation import DrawFn, ModelEval, eval_main, set_eval_field


def heldout_bits_per_dim(config: ml_collections.ConfigDict, params: Any) -> float:
    """Mean NLL bound in bits/dim of ``config.eval.bpd_examples`` unflipped held-out examples
    (-1: the whole split)."""
    ev = config.eval
    pipeline = create_input_pipeline(config.data, global_batch_size=ev.batch_size, seed=0,
                                     split=ev.bpd_split, process_index=0, process_count=1,
                                     random_flip=False)
    examples = bpd_example_count(config, pipeline.num_examples)
    unet = diffusion_model.build_unet(config)
    parameterization = diffusion_model.parameterization(config)
    schedule = diffusion_model.train_schedule(config)

    @jax.jit
    def nll(p, x, y, key):
        return bits_per_dim(lambda x_t, t: unet.apply({"params": p}, x_t, t, y), parameterization,
                            schedule, x, key)["total"]

    totals, count = [], 0
    while count < examples:
        batch = next(pipeline)
        totals.append(np.asarray(nll(params, batch["image"], batch["label"],
                                     jax.random.PRNGKey(count))))
        count += len(batch["image"])
    return float(np.mean(np.concatenate(totals)[:examples]))


def model_eval(config: ml_collections.ConfigDict, mesh: Mesh) -> ModelEval:
    """The diffusion part of the evaluation: the EMA U-Net sampled with each setting of
    ``sampling_settings``; bits/dim as a step metric when config.eval.bpd_examples != 0."""
    check_eval_settings(config)
    check_bpd_split(config)
    conditional = bool(config.model.num_classes)
    compiled: dict[tuple[Any, ...], Any] = {}

    def sampler(params: Any, setting: dict[str, Any]) -> DrawFn:
        key = tuple(setting.values())
        if key not in compiled:
            compiled[key] = jax.jit(lambda p, keys, labels: diffusion_model.generate(
                config, p, keys, labels if conditional else None, method=setting["sampler"],
                steps=setting["steps"], guidance=setting["guidance"]))
        return lambda keys, labels: compiled[key](params, keys, labels)

    def step_metrics(params: Any) -> dict[str, float]:
        if not config.eval.bpd_examples:
            return {}
        return {"bits_per_dim": heldout_bits_per_dim(config, params)}

    return ModelEval(
        create_state=lambda: create_train_state(config, mesh),
        weights=lambda state: state.ema_params,
        settings=sampling_settings(config),
        sampler=sampler,
        step_metrics=step_metrics,
    )


def check_bpd_split(config: ml_collections.ConfigDict) -> None:
    """With ``config.eval.bpd_examples`` != 0, fail before any sampling or compile if
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


def apply_sampler_flags(config: ml_collections.ConfigDict) -> None:
    """--sampler, --steps and --guidance into config.eval (unset flags keep the config's)."""
    f = flags.FLAGS
    if f.sampler:
        set_eval_field(config, "sampler", f.sampler)
    if f.steps:
        set_eval_field(config, "sample_steps", parse_numbers(f.steps, int, "steps", "50,100"))
    if f.guidance:
        set_eval_field(config, "guidance", parse_numbers(f.guidance, float, "guidance", "1,3"))


if __name__ == "__main__":
    flags.DEFINE_enum("sampler", None, METHODS, "Sampler (default config.eval.sampler).")
    flags.DEFINE_list("steps", None, "Respaced step counts, one setting each "
                      "(default config.eval.sample_steps).")
    flags.DEFINE_list("guidance", None, "Guidance scales, one setting each "
                      "(default config.eval.guidance).")
    eval_main(model_eval, apply_sampler_flags)
