"""Diffusion training: config rows and parameter counts, sharded step equals the 1-device step
(with dropout and label dropout), EMA warm-up, exact resume, 1 vs 2 processes, and errors
before any compile."""

import jax
import numpy as np
import pytest
from helpers import (
    assert_resume_is_exact,
    assert_trees_close,
    config_with,
    largest_difference,
    restore_final_state,
    train_one_and_two_processes,
)
from helpers import run_steps as run_steps_of

from diffusion import train, train_step
from diffusion.model import parameter_count
from gencore import sharding
from gencore.config_util import config_variants, load_config

TINY = {"model.ch": 32, "model.ch_mult": (1, 2), "model.attn_resolutions": (4,),
        "model.dropout": 0.2, "data.resolution": 8, "diffusion.num_steps": 50,
        "train.batch_size": 16, "train.warmup": 0, "train.lr": 1e-2, "train.ema_start": 1,
        "eval.sample_steps": 2,
        # A large Adam eps makes the first update linear in the gradient, so the comparison
        # measures gradient differences instead of sign flips of near-zero gradients.
        "train.adam_eps": 1.0}
TOLERANCE = 1e-5
SMALLER = {"model.ch_mult": (1,), "model.attn_resolutions": (), "model.dropout": 0.0,
           "eval.sample_steps": 1}   # one level, no attention: faster compiles


def tiny_config(**overrides):
    return config_with("configs/diffusion/digits.py", {**TINY, **overrides})


PAPER_ROWS = [name for name in config_variants("configs/diffusion")
              if "digits" not in name]
DERIVED_COUNT_ROWS = ("configs/diffusion/iddpm_cifar10.py:linear_simple",
                      "configs/diffusion/iddpm_cifar10.py:cosine_simple")
"""iDDPM L_simple rows: the reference measured only the learned-variance CIFAR-10 U-Net."""


def test_paper_rows_have_reference_parameter_counts():
    counts = {}   # one eval_shape per distinct architecture
    for spec in PAPER_ROWS:
        config = load_config(spec)
        arch = config.model.to_json()
        counts[arch] = counts.get(arch) or parameter_count(config)
        if spec in DERIVED_COUNT_ROWS:   # fixed variance: a 3-channel output conv
            assert "params" not in config.paper, spec
            assert counts[arch] == config.paper.params_derived == 52_546_438 - 3_459, spec
        else:
            assert counts[arch] == config.paper.params, spec
        assert config.paper.batch_size == config.train.batch_size, spec
        assert config.paper.steps == config.train.steps, spec
    assert len(counts) == 6


def test_every_row_is_listed_and_unknown_variant_lists_valid_ones():
    assert len(PAPER_ROWS) == 1 + 1 + 3 + 6 + 3
    with pytest.raises(ValueError, match=r"iddpm_cifar10.py:cosine_vlb"):
        load_config("configs/diffusion/iddpm_cifar10.py:cosine")


def random_batch(seed):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(-1, 1, (16, 8, 8, 3)).astype(np.float32),
            "label": rng.integers(0, 10, (16,)).astype(np.int32)}


def run_steps(config, devices, batches):
    return run_steps_of(train_step, config, devices, batches, sharding.BATCH_SPEC)


def test_sharded_step_equals_single_device_step():
    """Catches missing/double gradient means and per-device noise, labels or dropout masks."""
    config = tiny_config(**{"diffusion.label_drop_prob": 0.5})
    batches = [random_batch(0), random_batch(1)]
    one, one_metrics, initial = run_steps(config, jax.devices()[:1], batches)
    eight, eight_metrics, _ = run_steps(config, jax.devices(), batches)
    for field in ("params", "ema_params", "opt_state"):
        assert_trees_close(getattr(one, field), getattr(eight, field), TOLERANCE)
    assert_trees_close(one_metrics, eight_metrics, 1e-4)
    assert largest_difference(one.params, initial.params) > 100 * TOLERANCE
    # EMA warm-up: ema_start=1, so after step 1 the EMA equals the parameters, then averages.
    assert not np.allclose(jax.tree_util.tree_leaves(one.ema_params)[0],
                           jax.tree_util.tree_leaves(one.params)[0])


def test_importance_sampling_history_fills():
    config = tiny_config(**{"diffusion.loss_type": "vlb", "diffusion.var_type": "learned_range",
                            "diffusion.importance_sampling": True, "model.learn_sigma": True,
                            **SMALLER})
    state, metrics, _ = run_steps(config, jax.devices(), [random_batch(0)])
    assert int(state.loss_history.counts.sum()) == 16
    assert np.isfinite(metrics["vb"]) and metrics["vb"] > 0


@pytest.mark.parametrize("overrides,message", [
    ({"train.batch_size": 12}, r"batch_size=12 .*devices \(8\)"),
    ({"diffusion.var_type": "learned"}, r"var_type"),
    ({"model.null_class": False}, r"label_drop_prob"),
])
def test_bad_config_fails_before_compile(overrides, message):
    with pytest.raises(ValueError, match=message):
        train_step.make_train_step(tiny_config(**overrides), sharding.make_mesh())


def test_resume_is_exact(tmp_path):
    """4 steps in one go == 2 steps, stop, then resume to 4 (same workdir)."""
    overrides = {"train.checkpoint_every": 2, "train.log_every": 2, "train.sample_every": 4,
                 **SMALLER}
    assert_resume_is_exact(train.train_and_evaluate, train_step.create_train_state,
                           lambda steps: tiny_config(**overrides, **{"train.steps": steps}),
                           tmp_path)


@pytest.mark.slow   # three train jobs as subprocesses: 520 s at load ~12 on 2 cores
def test_two_processes_equal_one_process(tmp_path):
    """2 processes x 4 CPU devices (jax.distributed over loopback) == 1 process x 8: each
    process feeds its share of the global batch, noise, timesteps and dropped labels are drawn
    for the global batch."""
    run = {"train.steps": 2, "train.log_every": 1, "train.checkpoint_every": 2,
           "train.sample_every": 2, "diffusion.label_drop_prob": 0.5}
    overrides = {**TINY, **SMALLER, **run}
    one, two = train_one_and_two_processes("diffusion.main", "configs/diffusion/digits.py",
                                           overrides, tmp_path)
    config = tiny_config(**SMALLER, **run)
    a = restore_final_state(train_step.create_train_state, config, one)
    b = restore_final_state(train_step.create_train_state, config, two)
    assert int(a.step) == int(b.step) == 2
    for field in ("params", "ema_params", "opt_state"):
        assert_trees_close(getattr(a, field), getattr(b, field), TOLERANCE)
    initial = jax.device_get(train_step.create_train_state(config, sharding.make_mesh()))
    assert largest_difference(a.params, initial.params) > 100 * TOLERANCE
