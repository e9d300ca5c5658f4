"""Section 4 interventions (hinge margin, Wasserstein loss, R1, D dropout, freezing, config
errors), D's memorization test on a tiny checkpoint, and the digits' held-out split."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from test_biggan_train import random_batch, tiny_config

from biggan import interventions, losses, memorization, train_step
from biggan import model as biggan_model
from biggan.biggan import ProjectionHead
from biggan.layers import SPECTRAL
from gencore import data, sharding
from gencore.checkpoint import Checkpointer


def test_hinge_margin_and_wasserstein_losses():
    real, fake = jnp.array([2.0, 0.5]), jnp.array([-2.0, 0.5])
    d_loss, g_loss = losses.get_losses("hinge", hinge_margin=3.0)
    # relu(3 - [2, 0.5]) = [1, 2.5]; relu(3 + [-2, 0.5]) = [1, 3.5]
    assert [float(v) for v in d_loss(real, fake)] == [1.75, 2.25]
    assert float(g_loss(fake)) == pytest.approx(0.75)
    assert losses.get_losses("hinge", hinge_margin=1.0)[0] is losses.hinge_d
    d_loss, g_loss = losses.get_losses("wasserstein")
    assert [float(v) for v in d_loss(real, fake)] == [-1.25, -0.75]
    assert float(g_loss(fake)) == pytest.approx(0.75)


def small_d(params, x):
    """A smooth D on flat inputs: x [B, 5] -> logits [B]."""
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


def test_r1_penalty_and_its_gradient_match_finite_differences():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        params = {"w1": jnp.asarray(rng.normal(size=(5, 4))),
                  "w2": jnp.asarray(rng.normal(size=(4,)))}
        real = jnp.asarray(rng.normal(size=(3, 5)))
        h = 1e-5

        def r1(p):
            return losses.r1_penalty(lambda x: small_d(p, x), real)

        # E_i ||grad_x D(x_i)||^2 from central differences of D in every input coordinate.
        bumps = np.eye(real.size).reshape(real.size, *real.shape) * h
        slopes = np.array([(small_d(params, real + b) - small_d(params, real - b)) / (2 * h)
                           for b in bumps])                     # [coordinate, sample]
        expected = np.mean([np.sum(slopes[i * 5:(i + 1) * 5, i] ** 2) for i in range(3)])
        assert float(r1(params)) == pytest.approx(expected, rel=1e-7)
        grads = jax.grad(r1)(params)                            # double backprop
        for name, value in params.items():
            flat = np.asarray(value).reshape(-1)
            for j in range(flat.size):
                bump = np.zeros_like(flat)
                bump[j] = h
                plus = {**params, name: jnp.asarray((flat + bump).reshape(value.shape))}
                minus = {**params, name: jnp.asarray((flat - bump).reshape(value.shape))}
                numeric = (r1(plus) - r1(minus)) / (2 * h)
                assert float(grads[name].reshape(-1)[j]) == pytest.approx(float(numeric),
                                                                          rel=1e-5, abs=1e-8)


def test_dropout_changes_d_output_in_training_mode_only_when_enabled():
    """D's head (its last feature layer, pooling, linear and projection) with and without
    dropout; h [4, 2, 2, 8] -> logits [4]."""
    h = jax.random.normal(jax.random.PRNGKey(1), (4, 2, 2, 8))
    y = jnp.arange(4)
    variables = jax.jit(lambda key: ProjectionHead(10).init(key, h, y, train=False))(
        jax.random.PRNGKey(0))

    def logits(rate, train, key=0):
        out, _ = ProjectionHead(10, dropout_rate=rate).apply(
            variables, h, y, train=train, mutable=[SPECTRAL],
            rngs={"dropout": jax.random.PRNGKey(key)})
        return np.asarray(out)

    np.testing.assert_array_equal(logits(0.5, False), logits(0.0, False))
    np.testing.assert_array_equal(logits(0.0, True, 1), logits(0.0, True, 2))
    assert np.abs(logits(0.5, True) - logits(0.0, True)).max() > 1e-3
    assert np.abs(logits(0.5, True, 1) - logits(0.5, True, 2)).max() > 1e-3
    D = biggan_model.build_discriminator(tiny_config().model, dropout_rate=0.3)
    assert D.dropout_rate == 0.3


def test_freezing_leaves_params_and_optimizer_state_unchanged_from_its_step():
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    tx = optax.adam(0.1)
    grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.ones(2)}

    @jax.jit
    def update(step, params, opt_state):
        updates, new_opt_state = tx.update(grads, opt_state, params)
        return interventions.unless_frozen(step, 2, (optax.apply_updates(params, updates),
                                                     new_opt_state), (params, opt_state))

    before = (params, tx.init(params))
    moved = jax.device_get(update(jnp.int32(1), *before))
    assert np.abs(moved[0]["w"] - 1).min() > 0.05 and int(moved[1][0].count) == 1
    for step in (2, 7):
        frozen = jax.device_get(update(jnp.int32(step), *before))
        jax.tree_util.tree_map(np.testing.assert_array_equal, frozen, jax.device_get(before))
    assert interventions.unless_frozen(jnp.int32(9), -1, "updated", "current") == "updated"


@pytest.mark.slow
def test_train_step_with_every_intervention_freezes_g_then_d():
    """G frozen from step 0 and D from step 1: their params and optimizer states stay bit for
    bit; R1, dropout, margin and the sigma0 penalty and clamp on both nets run in the step."""
    config = tiny_config(**{
        "train.num_d_steps": 1, "train.r1_gamma": 1.0, "train.d_dropout": 0.2,
        "train.hinge_margin": 1.5, "train.sigma_reg": 0.1, "train.sigma_clamp": True,
        "train.sigma_nets": "GD", "train.sigma_target": 2.0, "train.freeze_g_step": 0,
        "train.freeze_d_step": 1})
    mesh = sharding.make_mesh()
    state = train_step.create_train_state(config, mesh)
    initial = jax.device_get(state)
    step = train_step.make_train_step(config, mesh)
    placement = NamedSharding(mesh, train_step.UPDATE_SPEC)
    state, metrics = step(state, jax.device_put(random_batch(config, 0), placement))
    after_one = jax.device_get(state)
    state, metrics = step(state, jax.device_put(random_batch(config, 1), placement))
    after_two, metrics = jax.device_get((state, metrics))
    for field in ("g_params", "g_opt_state"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, getattr(after_two, field),
                               getattr(initial, field))
    for field in ("d_params", "d_opt_state"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, getattr(after_two, field),
                               getattr(after_one, field))
    moved = jax.tree_util.tree_map(lambda a, b: np.abs(a - b).max(), after_one.d_params,
                                   initial.d_params)
    assert max(jax.tree_util.tree_leaves(moved)) > 0
    for key in ("r1", "d_sigma_reg", "g_sigma_reg", "d_loss_real", "g_loss"):
        assert np.isfinite(metrics[key]), key
    assert metrics["r1"] > 0 and metrics["d_sigma_reg"] > 0


@pytest.mark.parametrize("overrides,message", [
    ({"train.hinge_margin": 2.0, "train.loss": "non_saturating"}, r"hinge_margin=2.0 applies"),
    ({"train.hinge_margin": 0.0}, r"hinge_margin=0.0 must be > 0"),
    ({"train.d_dropout": 1.0}, r"config.train.d_dropout=1.0"),
    ({"train.sigma_nets": "X"}, r"config.train.sigma_nets='X'"),
    ({"train.r1_gamma": -1.0}, r"config.train.r1_gamma=-1.0"),
    ({"train.sigma_clamp": True, "train.sigma_target": 0.0}, r"config.train.sigma_target=0.0"),
    ({"train.freeze_g_step": -2}, r"config.train.freeze_g_step=-2"),
    ({"train.collapse_sigma0_factor": 3.0}, r"spectra_every > 0"),
])
def test_bad_intervention_config_fails_before_compile(overrides, message):
    with pytest.raises(ValueError, match=message):
        train_step.validate_train_config(tiny_config(**overrides), 8)


def test_digits_heldout_split_is_the_complement_of_the_training_subset():
    train = data._fixed_subset(1797, (0.25, False))
    heldout = data._fixed_subset(1797, (0.25, True))
    assert len(train) == 449 and len(heldout) == 1348
    assert not set(train) & set(heldout)
    config = tiny_config(**{"data.train_fraction": 0.25})
    pipeline = data.create_input_pipeline(config.data, global_batch_size=8, seed=0,
                                          split="heldout")
    assert pipeline.num_examples == 1348
    with pytest.raises(ValueError, match=r"data.train_fraction=1.0"):
        data.create_input_pipeline(tiny_config().data, global_batch_size=8, seed=0,
                                   split="heldout")
    with pytest.raises(ValueError, match=r"'train' and 'heldout'"):
        data.create_input_pipeline(config.data, global_batch_size=8, seed=0, split="validation")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A workdir with the step-0 checkpoint of a tiny digits run on half the images."""
    workdir = tmp_path_factory.mktemp("memorization")
    config = tiny_config(**{"data.train_fraction": 0.5})
    state = train_step.create_train_state(config, sharding.make_mesh(jax.devices()[:1]))
    with Checkpointer(workdir, config=config) as checkpointer:
        checkpointer.save(0, state, force=True)
    return workdir, config, jax.device_get(state)


def test_memorization_reports_d_accuracy_on_train_and_heldout_images(tiny_checkpoint):
    workdir, _, _ = tiny_checkpoint
    result = memorization.run(str(workdir), num_images=30, batch_size=20)
    assert (result["step"], result["train_split"], result["heldout_split"]) == (
        0, "train", "heldout")
    assert (result["num_train"], result["num_heldout"], result["num_fake"]) == (30, 30, 40)
    for key, count in (("train_accuracy", 30), ("heldout_accuracy", 30), ("fake_accuracy", 40)):
        assert 0 <= result[key] <= 1 and result[key] * count == pytest.approx(
            round(result[key] * count))


@pytest.mark.slow
def test_memorization_command_prints_one_json_line(tiny_checkpoint):
    workdir, _, _ = tiny_checkpoint
    done = subprocess.run(
        [sys.executable, "-m", "biggan.memorization", f"--workdir={workdir}", "--num_images=10",
         "--batch_size=10"], capture_output=True, text=True, timeout=600, check=True)
    line, = done.stdout.strip().splitlines()
    assert json.loads(line)["num_heldout"] == 10


def test_memorization_counts_d_decisions(tiny_checkpoint):
    """A D whose output bias dominates calls every image real, so every sample is missed."""
    _, config, state = tiny_checkpoint
    head = state.d_params["head"]["linear"]["dense"]
    d_params = {**state.d_params, "head": {**state.d_params["head"], "linear": {
        "dense": {**head, "bias": head["bias"] + 1e3}}}}
    result = memorization.d_accuracies(config, state.replace(d_params=d_params), num_images=30,
                                       heldout_split="heldout", batch_size=20)
    assert (result["train_accuracy"], result["heldout_accuracy"], result["fake_accuracy"]) == (
        1.0, 1.0, 0.0)
