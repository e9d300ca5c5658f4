"""Fault injection: no fault costs a run its progress or an eval its result, and bad input
ends a job with one line before any model is built.

The training-loop faults run `fault_worker.py`, a toy job around the real training loop and
checkpointer: kill -9 at several points (saves in flight included), SIGTERM during a save, a
damaged newest checkpoint, a failing checkpoint writer. The eval side restores checkpoints that
are damaged or deleted under it. The bad-input cases run the real commands under
`run_restricted.py --no-models`, where building any Flax model raises: a job that still stops
with its own message has checked its input first.
"""

import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from helpers import JOB_TIMEOUT_S, REPO, worker_env

from gencore import checkpoint
from gencore.checkpoint import Checkpointer, UnreadableCheckpointError

# A failed orbax restore leaves coroutines behind that report a closed event loop when they are
# collected, possibly during a later test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

WORKER = str(REPO / "tests" / "fault_worker.py")
RESTRICTED = str(REPO / "tests" / "run_restricted.py")
BIG = 4096   # rows of the toy state: 4 MiB, so a kill often lands inside a save


@struct.dataclass
class ToyState:   # fault_worker.ToyState's layout, as a restore target
    step: jax.Array
    w: jax.Array


def expected_w(steps, rows):
    """The toy state after ``steps`` uninterrupted steps (float32 sums in the same order)."""
    w = np.zeros((rows, 256), np.float32)
    for n in range(steps):
        w = w + np.random.default_rng(n).standard_normal((rows, 256)).astype(np.float32)
    return w


def worker_command(workdir, *flags):
    return [sys.executable, WORKER, f"--workdir={workdir}", *flags]


def run_worker(workdir, *flags):
    return subprocess.run(worker_command(workdir, *flags), capture_output=True, text=True,
                          timeout=JOB_TIMEOUT_S, env=worker_env(), cwd=REPO)


def start_worker(workdir, log, *flags):
    with open(log, "w") as out:
        return subprocess.Popen(worker_command(workdir, *flags), stdout=out,
                                stderr=subprocess.STDOUT, env=worker_env(), cwd=REPO)


def wait_for_step(log, at_least, timeout=120):
    """Waits for the progress line of a step >= ``at_least``; returns that step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [int(line.split()[1].split("/")[0]) for line in log.read_text().splitlines()
                 if line.startswith("step ")]
        if steps and steps[-1] >= at_least:
            return steps[-1]
        time.sleep(0.02)
    raise AssertionError(f"no step {at_least} in {log}:\n{log.read_text()[-3000:]}")


def final_state(workdir, rows, step=None):
    target = ToyState(jax.ShapeDtypeStruct((), jnp.int32),
                      jax.ShapeDtypeStruct((rows, 256), jnp.float32))
    with Checkpointer(str(workdir), read_only=True) as ckpt:
        return ckpt.restore(target, step)


def assert_finished_like_uninterrupted(workdir, steps, rows):
    state = final_state(workdir, rows)
    assert int(state.step) == steps
    np.testing.assert_array_equal(np.asarray(state.w), expected_w(steps, rows))
    assert checkpoint.training_finished(workdir)


def test_kill9_at_several_points_then_resume_equals_an_uninterrupted_run(tmp_path):
    workdir, log = tmp_path / "run", tmp_path / "log"
    flags = [f"--rows={BIG}", "--steps=14", "--checkpoint_every=1"]
    killed_at = 3
    for _ in range(2):
        process = start_worker(workdir, log, *flags)
        wait_for_step(log, killed_at)
        process.kill()
        process.wait(timeout=60)
        killed_at = max(checkpoint.complete_steps(workdir)) + 3
    done = run_worker(workdir, *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_finished_like_uninterrupted(workdir, 14, BIG)


def test_sigterm_during_a_save_checkpoints_the_step_and_exits_cleanly(tmp_path):
    workdir, log = tmp_path / "run", tmp_path / "log"
    flags = [f"--rows={BIG}", "--steps=1000", "--checkpoint_every=1"]
    process = start_worker(workdir, log, *flags)
    wait_for_step(log, 3)
    process.send_signal(signal.SIGTERM)    # a save of the 4 MiB state is almost always running
    assert process.wait(timeout=120) == 0, log.read_text()[-3000:]
    stopped = int(log.read_text().split("Stopped at step ")[1].split(";")[0])
    assert checkpoint.complete_steps(workdir)[-1] == stopped
    np.testing.assert_array_equal(np.asarray(final_state(workdir, BIG).w),
                                  expected_w(stopped, BIG))
    assert not checkpoint.training_finished(workdir)


def damage(step_dir, how):
    if how == "truncated state metadata":
        path = step_dir / "state" / "_METADATA"
        path.write_bytes(path.read_bytes()[:40])
    elif how == "missing array file":
        data = sorted((step_dir / "state").glob("ocdbt.process_*/d/*"),
                      key=lambda p: p.stat().st_size)
        data[-1].unlink()
    elif how == "truncated array file":
        data = sorted((step_dir / "state").glob("ocdbt.process_*/d/*"),
                      key=lambda p: p.stat().st_size)
        data[-1].write_bytes(data[-1].read_bytes()[:100])


@pytest.fixture(scope="module")
def four_steps(tmp_path_factory):
    """A finished toy run of 4 steps with checkpoints 2, 3 and 4, to copy."""
    workdir = tmp_path_factory.mktemp("four_steps") / "run"
    done = run_worker(workdir, "--steps=4")
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


@pytest.mark.parametrize("how", ["truncated state metadata", "missing array file",
                                 "truncated array file"])
def test_damaged_newest_checkpoint_is_moved_aside_and_training_resumes_before_it(
        tmp_path, four_steps, how):
    workdir = tmp_path / "run"
    shutil.copytree(four_steps, workdir)
    damage(workdir / "checkpoints" / "4", how)
    resumed = run_worker(workdir, "--steps=6")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Checkpoint 4 in" in resumed.stderr and "cannot be read" in resumed.stderr
    assert "Resuming from the checkpoint at step 3" in resumed.stdout
    (aside,) = (workdir / "checkpoints").glob("4.unreadable-*")   # kept, not deleted
    assert (aside / "state").is_dir()
    assert_finished_like_uninterrupted(workdir, 6, 64)


def test_failing_writer_ends_the_job_with_one_line_and_loses_no_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    failed = run_worker(workdir, "--steps=6", "--fail_save_at=3")
    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith("train failed: CheckpointWriteError: Writing checkpoint 3 to ")
    assert "No space left on device" in message and "newest complete checkpoint is 2" in message
    assert "Traceback" not in failed.stderr
    assert "Traceback" in (workdir / "logs" / "train.log").read_text()
    assert checkpoint.complete_steps(workdir) == [1, 2]
    resumed = run_worker(workdir, "--steps=6")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from the checkpoint at step 2" in resumed.stdout
    assert_finished_like_uninterrupted(workdir, 6, 64)


def test_eval_skips_damaged_and_deleted_checkpoints_and_keeps_following(tmp_path):
    workdir = tmp_path / "run"
    done = run_worker(workdir, "--steps=5", "--keep_checkpoints=5")
    assert done.returncode == 0, done.stderr[-3000:]
    listed = list(checkpoint.steps_to_evaluate(workdir, timeout_seconds=5))
    assert listed == [1, 2, 3, 4, 5]
    shutil.rmtree(workdir / "checkpoints" / "2")   # deleted by keep_checkpoints meanwhile
    damage(workdir / "checkpoints" / "4", "truncated array file")
    config_file = workdir / "checkpoints" / "5" / "config" / "metadata"
    config_file.write_text(config_file.read_text()[:5])   # a damaged config alone

    def restore(step):
        return int(final_state(workdir, 64, step).step)

    assert list(checkpoint.restored_steps(listed, restore)) == [(1, 1), (3, 3), (5, 5)]
    with pytest.raises(UnreadableCheckpointError, match="Checkpoint 4 in .* cannot be read"):
        list(checkpoint.restored_steps([4], restore, skip_unreadable=False))
    assert checkpoint.saved_config(workdir)["model"] == {"rows": 64}   # from step 3's


def run_restricted(*args):
    done = subprocess.run([sys.executable, RESTRICTED, "--no-models", *args],
                          capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
                          env=worker_env(), cwd=REPO)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    """Paths the bad-input cases point at: a missing one and a damaged converted release."""
    root = tmp_path_factory.mktemp("bad")
    damaged = root / "damaged_release"
    damaged.mkdir()
    (damaged / "pretrained.json").write_text('{"format": ')
    return {"missing": str(root / "missing"), "damaged": str(damaged), "root": root}


ROW8 = "--config=configs/biggan/imagenet128.py:row8"
DIGITS = "--config=configs/biggan/digits.py"
BAD_INPUT = {
    "row 8, missing data_dir": (
        ["biggan.main", ROW8, "--workdir={root}/w1", "--config.data.data_dir={missing}"],
        "data.data_dir='{missing}' does not exist"),
    "DDPM CIFAR-10, missing data_dir": (
        ["diffusion.main", "--config=configs/diffusion/ddpm_cifar10.py", "--workdir={root}/w2",
         "--config.data.data_dir={missing}"], "data.data_dir='{missing}' does not exist"),
    "unknown field": (
        ["biggan.main", DIGITS, "--workdir={root}/w3", "--config.model.ch=8"],
        "Did you mean config.model.g_ch?"),
    "unknown section": (
        ["biggan.main", DIGITS, "--workdir={root}/w3", "--config.modl.g_ch=8"],
        "Did you mean config.model?"),
    "unknown row": (
        ["biggan.main", "--config=configs/biggan/imagenet128.py:row10", "--workdir={root}/w4"],
        "Unknown config variant 'row10'"),
    "resolution 48": (
        ["biggan.main", DIGITS, "--workdir={root}/w5", "--config.model.resolution=48"],
        "resolution"),
    "batch 7 on 2 devices": (
        ["biggan.main", DIGITS, "--workdir={root}/w6", "--config.train.batch_size=7",
         "--cpu_devices=2"], "batch_size"),
    "unknown loss": (
        ["biggan.main", DIGITS, "--workdir={root}/w7", "--config.train.loss=l2"], "loss"),
    "eval of a missing step": (
        ["biggan.eval", DIGITS, "--workdir={root}/w8", "--step=5"],
        "Checkpoint 5 in"),
    "BigGAN eval, truncation 0": (
        ["biggan.eval", DIGITS, "--workdir={root}/w9", "--config.eval.truncations=(0.0, 1.0)"],
        "config.eval.truncations holds 0.0"),
    "diffusion eval, steps above T": (
        ["diffusion.eval", "--config=configs/diffusion/digits.py", "--workdir={root}/w10",
         "--steps=2000"], "holds 2000: each entry must be a whole number of respaced steps"),
    "diffusion eval, fractional steps": (
        ["diffusion.eval", "--config=configs/diffusion/digits.py", "--workdir={root}/w11",
         "--steps=2.5"], "--steps=2.5: pass int values, e.g. --steps=50,100"),
    "sample without a source": (["biggan.sample"], "--workdir"),
    "BigGAN sample, classes not numbers": (
        ["biggan.sample", "--workdir={root}/w12", "--classes=a"],
        "--classes=a: pass int values, e.g. --classes=207,980"),
    "diffusion sample, classes not numbers": (
        ["diffusion.sample", "--workdir={root}/w13", "--classes=1,b"],
        "--classes=1,b: pass int values, e.g. --classes=1,7"),
    "damaged converted release": (
        ["biggan.sample", "--pretrained={damaged}"], "pretrained.json is damaged"),
    "summary of an unknown row": (
        ["biggan.summary", "--config=configs/biggan/imagenet128.py:row10"],
        "Unknown config variant 'row10'"),
    "Inception converter, missing input": (
        ["gencore.convert_inception", "--input={missing}.pth", "--output={root}/w.npz"],
        "{missing}.pth"),
    "BigGAN-deep converter, missing input": (
        ["biggan.convert_pretrained", "--input={missing}", "--output={root}/out"],
        "{missing}"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_with_one_line_before_any_model_is_built(case, bad_inputs):
    args, message = BAD_INPUT[case]
    if "missing data_dir" in case:   # tfds datasets; without the extra: test_data.py's case
        pytest.importorskip("tensorflow_datasets")
    status, output = run_restricted(*(a.format(**bad_inputs) for a in args))
    assert status != 0
    assert message.format(**bad_inputs) in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def test_damaged_weight_files_name_the_file(tmp_path):
    from gencore import inception, tree_npz

    path = tmp_path / "inception.npz"
    tree_npz.save_tree({"a": np.zeros(3)}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(tree_npz.DamagedFileError, match=f"{path} is damaged"):
        inception.load_variables(path)
