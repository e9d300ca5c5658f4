"""DiffAugment and ADA: the transforms, their ranges and gradients, the three places D sees
images in the train step, ADA's p rule and its checkpoint, and the data-efficient configs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from test_biggan_train import random_batch, tiny_config

from biggan import diffaugment, train_step
from gencore import sharding
from gencore.checkpoint import Checkpointer
from gencore.config_util import config_variants, load_config
from gencore.training import abstract_like

POLICY = "color,translation,cutout"


def images_in_range(batch=8, size=32, low=-1.0, seed=0):
    return jax.random.uniform(jax.random.PRNGKey(seed), (batch, size, size, 3), minval=low,
                              maxval=1.0)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", POLICY])
def test_augment_is_differentiable(policy):
    x = images_in_range()
    weights = jax.random.normal(jax.random.PRNGKey(1), x.shape)
    for probability in (None, jnp.float32(0.7)):
        grad = jax.grad(lambda v, p=probability: jnp.sum(
            weights * diffaugment.augment(v, jax.random.PRNGKey(2), policy, p)))(x)
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0.1


def test_translation_shifts_by_at_most_an_eighth_with_zero_fill():
    x = images_in_range(low=0.1)        # no zeros in the input, so the fill is visible
    out = np.asarray(diffaugment.translation(x, jax.random.PRNGKey(3)))
    padded = np.pad(np.asarray(x), ((0, 0), (4, 4), (4, 4), (0, 0)))
    shifts = []
    for image, result in zip(padded, out, strict=True):
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                 if np.array_equal(image[4 + dy:36 + dy, 4 + dx:36 + dx], result)]
        assert len(found) == 1
        shifts.append(found[0])
    assert len(set(shifts)) > 1 and out.min() >= 0 and out.max() <= 1


def test_cutout_zeroes_one_clipped_half_size_square():
    x = images_in_range(batch=32, low=0.1)
    out = np.asarray(diffaugment.cutout(x, jax.random.PRNGKey(4)))
    zero = np.all(out == 0, axis=-1)
    np.testing.assert_array_equal(out[~zero], np.asarray(x)[~zero])
    heights = []
    for mask in zero:
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()   # one rectangle
        assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16
        heights.append(len(rows))
    assert 16 in heights and min(heights) < 16   # full squares and ones clipped at the border


def test_colour_transforms_do_what_they_say_and_stay_in_their_ranges():
    x = images_in_range(batch=64)
    key = jax.random.PRNGKey(5)
    shift = np.asarray(diffaugment.brightness(x, key) - x)
    assert np.allclose(shift, shift[:, :1, :1, :1], atol=1e-6)
    assert np.abs(shift).max() <= 0.5 and shift.std() > 0.1
    saturated = diffaugment.saturation(x, key)
    np.testing.assert_allclose(saturated.mean(-1), x.mean(-1), atol=1e-5)
    contrasted = diffaugment.contrast(x, key)
    np.testing.assert_allclose(contrasted.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5)
    extremes = jnp.sign(images_in_range(batch=64, seed=1))   # values +-1: the worst case
    for transform, bound in ((diffaugment.brightness, 1.5), (diffaugment.saturation, 3.0),
                             (diffaugment.contrast, 2.0)):
        assert np.abs(transform(extremes, key)).max() <= bound


def test_probability_gates_each_transform_per_image():
    x = images_in_range(batch=200, low=0.1)
    key = jax.random.PRNGKey(6)
    always = diffaugment.augment(x, key, "cutout")
    np.testing.assert_array_equal(diffaugment.augment(x, key, "cutout", jnp.float32(1.0)), always)
    np.testing.assert_array_equal(diffaugment.augment(x, key, "cutout", jnp.float32(0.0)), x)
    changed = np.any(np.asarray(diffaugment.augment(x, key, "cutout", jnp.float32(0.3)) != x),
                     axis=(1, 2, 3))
    assert 0.2 < changed.mean() < 0.4
    np.testing.assert_array_equal(diffaugment.augment(x, key, ""), x)


def test_ada_p_rises_when_d_is_overconfident_on_reals_and_falls_otherwise():
    config = tiny_config(**{"train.ada_target": 0.6, "train.ada_interval": 2,
                            "train.ada_kimg": 1.0})
    step_size = 16 * 2 * 2 / 1000      # batch x D steps x interval real images / (kimg x 1000)
    for real_sign, direction in ((0.9, 1), (0.2, -1)):
        ada = {"p": jnp.float32(0.5), "real_sign_sum": jnp.float32(0.0)}
        ada = diffaugment.ada_update(ada, jnp.float32(real_sign), jnp.int32(0), config.train)
        assert float(ada["p"]) == 0.5 and float(ada["real_sign_sum"]) == pytest.approx(real_sign)
        ada = diffaugment.ada_update(ada, jnp.float32(real_sign), jnp.int32(1), config.train)
        assert float(ada["p"]) == pytest.approx(0.5 + direction * step_size)
        assert float(ada["real_sign_sum"]) == 0
    ada = diffaugment.ada_update({"p": jnp.float32(0.01), "real_sign_sum": jnp.float32(0.0)},
                                 jnp.float32(-1.0), jnp.int32(1), config.train)
    assert float(ada["p"]) == 0.0   # clipped to [0, 1]


def run_one_step(config, devices, labels=None):
    mesh = sharding.make_mesh(devices)
    state = train_step.create_train_state(config, mesh)
    step = train_step.make_train_step(config, mesh)
    batch = random_batch(config)
    if labels is not None:
        batch["label"][:] = labels
    state, metrics = step(state, jax.device_put(batch, NamedSharding(mesh,
                                                                     train_step.UPDATE_SPEC)))
    return jax.device_get(state), jax.device_get(metrics)


def test_every_place_d_sees_images_augments_them_with_the_policy(monkeypatch):
    """A stand-in augment that blanks its images: with one class, D's mean logits on the real
    and the fake images of the D update are equal only if both go through it, and G's gradient
    is zero only if the G update's fakes do. Each call on each device gets its own key."""
    calls, keys = [], []

    def blanking_augment(images, key, policy, probability=None):
        calls.append((policy, probability))
        jax.debug.callback(lambda k: keys.append(tuple(np.asarray(k).tolist())), key)
        return jnp.zeros_like(images)

    monkeypatch.setattr(diffaugment, "augment", blanking_augment)
    config = tiny_config(**{"train.diffaugment": "translation", "model.num_classes": 1})
    _, metrics = run_one_step(config, jax.devices()[:2], labels=0)
    assert metrics["d_real"] == metrics["d_fake"] and metrics["g_grad_norm"] == 0
    # 2 D updates x (real, fake) + 1 G update, traced once; run on each of the 2 devices
    assert calls == [("translation", None)] * 5
    assert len(keys) == 5 * 2 and len(set(keys)) == 5 * 2


def test_ada_moves_p_in_the_train_step_and_survives_a_checkpoint(tmp_path):
    """ADA in the sharded step: p holds while the interval (2 steps) fills, then moves by
    sign(r_t - 0.6) x (16 images x 2 steps) / 1000, r_t the mean of the steps' E[sign(D(real))];
    a checkpoint taken mid-interval (after step 1) resumes bit for bit, partial sum included."""
    config = tiny_config(**{"train.diffaugment": POLICY, "train.ada_target": 0.6,
                            "train.ada_interval": 2, "train.ada_kimg": 1.0,
                            "train.ada_p_init": 0.5, "train.num_d_steps": 1})
    mesh = sharding.make_mesh(jax.devices()[:2])
    step = train_step.make_train_step(config, mesh)
    placement = NamedSharding(mesh, train_step.UPDATE_SPEC)
    batches = [jax.device_put(random_batch(config, seed), placement) for seed in range(3)]
    state, signs, states = train_step.create_train_state(config, mesh), [], []
    with Checkpointer(tmp_path, async_save=False) as checkpointer:
        for batch in batches:
            state, metrics = step(state, batch)
            signs.append(float(metrics["d_real_sign"]))
            states.append(jax.device_get(state))
            if len(states) == 1:
                checkpointer.save(1, state, force=True)
        restored = checkpointer.restore(abstract_like(state), 1)
    p = [float(s.ada["p"]) for s in states]
    direction = np.sign((signs[0] + signs[1]) / 2 - 0.6)
    assert p[0] == 0.5 and float(states[0].ada["real_sign_sum"]) == pytest.approx(signs[0])
    assert p[1] == pytest.approx(0.5 + direction * 16 * 2 / 1000) and direction != 0
    assert p[2] == p[1] and float(metrics["ada_p"]) == p[2]
    for batch in batches[1:]:
        restored, _ = step(restored, batch)
    jax.tree_util.tree_map(np.testing.assert_array_equal, states[-1], jax.device_get(restored))


@pytest.mark.parametrize("overrides,message", [
    ({"train.diffaugment": "colour"}, r"config.train.diffaugment='colour'.*'color'"),
    ({"train.ada_target": 0.6}, r"ada_target=0.6 .*config.train.diffaugment is ''"),
    ({"train.ada_target": 1.5}, r"config.train.ada_target=1.5"),
    ({"train.diffaugment": POLICY, "train.ada_target": 0.6, "train.ada_interval": 0},
     r"config.train.ada_interval=0"),
    ({"train.diffaugment": POLICY, "train.ada_target": 0.6, "train.ada_kimg": 0.0},
     r"config.train.ada_kimg=0.0"),
])
def test_bad_augment_config_fails_before_compile(overrides, message):
    with pytest.raises(ValueError, match=message):
        train_step.make_train_step(tiny_config(**overrides), sharding.make_mesh())


# BigGAN figures published by Zhao et al. 2020: percent -> (baseline, DiffAugment).
CIFAR10_FID = {10: (39.78, 22.40), 20: (21.58, 14.04), 100: (9.59, 8.70)}
IMAGENET128_IS_FID = {25: ((46.5, 25.37), (74.2, 13.28)), 50: ((89.9, 9.64), (91.9, 8.88)),
                      100: ((94.5, 7.62), (100.8, 6.80))}


@pytest.mark.parametrize("name", [f"cifar10_{p}" for p in CIFAR10_FID]
                         + [f"imagenet128_{p}" for p in IMAGENET128_IS_FID])
def test_data_efficient_configs(name):
    config = load_config(f"configs/biggan/data_efficient.py:{name}")
    dataset, percent = name.rsplit("_", 1)
    percent = int(percent)
    assert config.data.name == ("cifar10" if dataset == "cifar10" else "imagenet2012")
    assert config.data.train_fraction == percent / 100 and config.train.diffaugment == POLICY
    train_step.validate_train_config(config, 1)
    paper = config.paper
    assert paper.train_percent == percent
    if dataset == "cifar10":
        assert (paper.baseline_fid, paper.fid) == CIFAR10_FID[percent]
    else:
        assert ((paper.baseline_inception_score, paper.baseline_fid),
                (paper.inception_score, paper.fid)) == IMAGENET128_IS_FID[percent]


def test_augmentation_is_off_in_every_other_config():
    for name in config_variants("configs/biggan"):
        if "data_efficient" not in name:
            config = load_config(name)
            assert config.train.diffaugment == "" and config.train.ada_target == 0, name
