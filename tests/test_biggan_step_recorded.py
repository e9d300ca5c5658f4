"""BigGAN's train step with every switch on (2 D steps, 2 micro-batches, R1, D dropout, hinge
margin, sigma0 penalty and clamp on G and D, freezing, DiffAugment with ADA, orthogonal
regularization, EMA) for 3 steps on 8 devices equals the state recorded in
``tests/data/biggan_step_every_switch.<isa>.npz`` bit for bit (restructuring the step must not
change its arithmetic). Another jax version compiles other float orderings, which 3 steps at lr 1e-2
amplify past any fixed tolerance (2.7e-4 with jax 0.12), so there the test is skipped. XLA:CPU
also compiles other orderings for another vector instruction set, so the state is recorded per
set (<isa>: avx512, avx2) and the test is skipped on a CPU with
none recorded. A change meant to alter the arithmetic (e.g. how XLA computes the convolutions)
re-records the state with ``python3 tests/test_biggan_step_recorded.py`` (8 CPU devices) on a
machine of each set."""

import jax
import numpy as np
import pytest
from helpers import REPO, config_with
from jax.sharding import NamedSharding

from biggan import train_step
from gencore import sharding, tree_npz


def vector_isa() -> str:
    """This CPU's widest x86 vector instruction set: 'avx512', 'avx2', or 'other' (also where
    /proc/cpuinfo is missing)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return "other"
    return next((isa for isa, flag in (("avx512", "avx512f"), ("avx2", "avx2"))
                 if flag in flags), "other")


RECORDED = REPO / "tests" / "data" / f"biggan_step_every_switch.{vector_isa()}.npz"
EVERY_SWITCH = {
    "model.resolution": 32, "train.loss": "hinge", "train.latent": "normal",
    "train.per_sample_sigma": (0.1, 1.0),
    "model.g_ch": 4, "model.d_ch": 4, "model.z_dim": 16, "model.shared_dim": 8,
    "train.batch_size": 16, "train.num_d_steps": 2, "train.grad_accum": 2,
    "train.ema_start": 1, "train.ema_decay": 0.5, "train.g_lr": 1e-2, "train.d_lr": 1e-2,
    "train.r1_gamma": 1.0, "train.d_dropout": 0.2, "train.hinge_margin": 1.5,
    "train.sigma_reg": 0.1, "train.sigma_clamp": True, "train.sigma_nets": "GD",
    "train.sigma_target": 2.0, "train.freeze_g_step": 2, "train.freeze_d_step": 2,
    "train.diffaugment": "color,translation,cutout", "train.ada_target": 0.6,
    "train.ada_interval": 1, "train.ada_kimg": 0.01, "train.ortho_reg": 1e-3}


def every_switch_run() -> dict[str, np.ndarray]:
    """The state after 3 steps and the last step's metrics, flattened to 'path' -> array."""
    config = config_with("configs/biggan/digits.py", EVERY_SWITCH)
    mesh = sharding.make_mesh()
    state = train_step.create_train_state(config, mesh)
    step = train_step.make_train_step(config, mesh)
    placement = NamedSharding(mesh, train_step.UPDATE_SPEC)
    rng = np.random.default_rng(0)
    for _ in range(3):
        shape = (2, 2, 8)
        batch = {"image": rng.uniform(-1, 1, (*shape, 32, 32, 3)).astype(np.float32),
                 "label": rng.integers(0, 10, shape).astype(np.int32)}
        state, metrics = step(state, jax.device_put(batch, placement))
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get((state, metrics)))[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def test_step_with_every_switch_equals_the_recorded_state():
    if not RECORDED.exists():
        pytest.skip(f"no state recorded for this CPU's vector instruction set ({RECORDED.name})")
    flat, metadata = tree_npz.load_flat(RECORDED)
    if metadata["jax"] != jax.__version__:
        pytest.skip(f"recorded with jax {metadata['jax']}, running {jax.__version__}")
    ours = every_switch_run()
    assert sorted(ours) == sorted(flat)
    for name, value in ours.items():
        np.testing.assert_array_equal(value, flat[name], err_msg=name)


if __name__ == "__main__":
    jax.config.update("jax_num_cpu_devices", 8)
    tree_npz.save_tree(every_switch_run(), RECORDED,
                       {"jax": jax.__version__, "cpu_vector_isa": vector_isa()})
