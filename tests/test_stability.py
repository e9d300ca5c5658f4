"""Periodic hooks of the shared training loop, collapse detection on synthetic metric streams
(record, kept checkpoints, stopping), the spectra log and its plot."""

import json

import flax
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from biggan import plot_spectra, stability
from gencore.checkpoint import FINISHED_MARKER, complete_steps, kept_steps
from gencore.hooks import HookResult, PeriodicHook
from gencore.training import run_training

SIGMA0 = "spectra/G/linear/dense/kernel/sigma0"


def test_sigma0_explosion_is_detected_against_recent_history():
    detector = stability.CollapseDetector(sigma0_factor=3.0, loss_jump=0.0, window=3)
    stream = [1.0, 1.1, 1.05, 1.2, 1.3, 1.4, 5.0]
    found = [detector.update({SIGMA0: v, "spectra/D/x/sigma0": 100.0 * v}) for v in stream]
    assert found[:-1] == [None] * 6     # slow growth (and D's values) never fire
    assert SIGMA0 in found[-1] and "median 1.3" in found[-1]
    early = stability.CollapseDetector(sigma0_factor=3.0, loss_jump=0.0, window=3)
    assert [early.update({SIGMA0: v}) for v in (1.0, 50.0, 2500.0)] == [None] * 3  # no history


def test_d_loss_jump_is_detected_and_zero_turns_tests_off():
    stream = [0.9, 0.7, 0.6, 0.5, 0.45, 2.9, 0.4]
    detector = stability.CollapseDetector(sigma0_factor=0.0, loss_jump=2.0, window=3)
    found = [detector.update({"d_loss_real": v / 2, "d_loss_fake": v / 2}) for v in stream]
    assert [i for i, f in enumerate(found) if f] == [5]
    off = stability.CollapseDetector(sigma0_factor=0.0, loss_jump=0.0, window=3)
    assert all(off.update({"d_loss_real": v, "d_loss_fake": 0.0, SIGMA0: 1e9 * v}) is None
               for v in stream)


@flax.struct.dataclass
class ToyState:
    step: jax.Array
    w: jax.Array


def toy_training(workdir, d_losses, hooks, keep_checkpoints=1):
    """run_training on a model whose step adds 1 to w and reports the stream's D loss."""
    config = ml_collections.ConfigDict({"train": dict(
        steps=len(d_losses), log_every=1, sample_every=1000, checkpoint_every=2,
        keep_checkpoints=keep_checkpoints)})

    @jax.jit
    def step(state, loss):
        return (state.replace(step=state.step + 1, w=state.w + 1.0),
                {"d_loss_real": loss, "d_loss_fake": jnp.zeros(())})

    return run_training(
        config, str(workdir),
        init_state=lambda: ToyState(jnp.zeros((), jnp.int32), jnp.zeros(())),
        train_step=step, batches_from=lambda start: iter(d_losses[start:]),
        images_per_step=1, hooks=hooks)


def test_periodic_hooks_run_on_their_steps_and_log_scalars(tmp_path):
    calls = []

    def record(step, state, scalars):
        calls.append((step, int(state.step), sorted(scalars)))
        return HookResult(scalars={"extra": 1.0})

    def second(step, state, scalars):
        calls.append((step, "second", "extra" in scalars))

    toy_training(tmp_path, [1.0] * 6, [PeriodicHook(3, record), PeriodicHook(0, second),
                                       PeriodicHook(2, second)])
    logged = ["d_loss_fake", "d_loss_real", "images_per_sec", "steps_per_sec"]
    assert calls == [(2, "second", False), (3, 3, logged),
                     (4, "second", False), (6, 6, logged),
                     (6, "second", True)]


@pytest.mark.parametrize("stop", [False, True])
def test_collapse_is_recorded_keeps_pre_collapse_checkpoints_and_can_stop(tmp_path, stop):
    losses = [1.0] * 8 + [6.0] + [1.0] * 5    # D's loss jumps at step 9
    train = ml_collections.ConfigDict(dict(
        spectra_every=0, spectra_iterations=8, collapse_sigma0_factor=0.0,
        collapse_d_loss_jump=2.0, collapse_window=3, stop_on_collapse=stop))
    hooks = stability.stability_hooks(train, str(tmp_path), compute_spectra=None)
    state = toy_training(tmp_path, losses, hooks)
    events = json.loads((tmp_path / stability.COLLAPSE_FILE).read_text())
    assert [(e["step"], e["stop"]) for e in events] == [(9, stop)]
    assert "D loss 6" in events[0]["reason"]
    assert kept_steps(tmp_path) == [8]      # saved before the collapse; max_to_keep is 1
    assert (tmp_path / FINISHED_MARKER).exists()
    if stop:   # stopped after step 9 without saving it
        assert int(state.step) == 9 and complete_steps(tmp_path) == [8]
    else:      # later checkpoints rotate, the pre-collapse one stays
        assert int(state.step) == 14 and complete_steps(tmp_path) == [8, 14]


def test_no_collapse_keeps_the_usual_rotation(tmp_path):
    train = ml_collections.ConfigDict(dict(
        spectra_every=0, spectra_iterations=8, collapse_sigma0_factor=0.0,
        collapse_d_loss_jump=2.0, collapse_window=3, stop_on_collapse=True))
    toy_training(tmp_path, [1.0, 0.8] * 5, stability.stability_hooks(train, str(tmp_path), None))
    assert not (tmp_path / stability.COLLAPSE_FILE).exists()
    assert complete_steps(tmp_path) == [10] and kept_steps(tmp_path) == []


def test_spectra_log_and_plot(tmp_path):
    def compute(state):
        s = state.w
        return {"G": {"linear/dense/kernel": jnp.stack([3.0 * s, 2.0 * s, s])},
                "D": {"head/linear/dense/kernel": jnp.stack([s, 0.0 * s, 0.0 * s])}}

    hook = stability.spectra_hook(str(tmp_path), 2, compute)
    for step in (2, 4, 4):   # a resumed run repeats step 4: the later line wins
        result = hook.run(step, ToyState(jnp.int32(step), jnp.float32(step)), {})
    assert result.scalars[SIGMA0] == 12.0
    assert result.scalars["spectra/D/head/linear/dense/kernel/sigma2"] == 0.0
    records = stability.read_spectra(str(tmp_path))
    assert [r["step"] for r in records] == [2, 4]
    assert records[1]["spectra"]["G"]["linear/dense/kernel"] == [12.0, 8.0, 4.0]
    (tmp_path / stability.COLLAPSE_FILE).write_text(json.dumps([{"step": 3}]))
    out = tmp_path / "plots" / "spectra.png"
    plot_spectra.plot(str(tmp_path), str(out), pattern="linear")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(plot_spectra.series(records, "G", "^linear")) == {"linear/dense/kernel"}
    assert plot_spectra.series(records, "G", "^head") == {}


@pytest.mark.parametrize("field,value,message", [
    ("collapse_sigma0_factor", 3.0, "set config.train.spectra_every > 0"),
    ("collapse_sigma0_factor", 0.5, "collapse_sigma0_factor=0.5 must be > 1"),
    ("spectra_every", -1, "spectra_every=-1 must be >= 0"),
    ("collapse_window", 0, "collapse_window=0 must be >= 1"),
])
def test_bad_stability_config(field, value, message):
    train = ml_collections.ConfigDict(dict(
        spectra_every=0, spectra_iterations=8, collapse_sigma0_factor=0.0,
        collapse_d_loss_jump=0.0, collapse_window=5, stop_on_collapse=False))
    train[field] = value
    with pytest.raises(ValueError, match=message):
        stability.validate_stability_config(train)
