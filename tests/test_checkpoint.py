"""Checkpoints: sharded save/restore, config compatibility, atomicity, eval following, SIGTERM."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from gencore import checkpoint
from gencore.checkpoint import Checkpointer, IncompatibleCheckpointError
from gencore.preemption import PreemptionHandler

sys.path.insert(0, str(Path(__file__).parent))
from checkpoint_worker import abstract_state, initial_weights  # noqa: E402
from helpers import REPO, worker_env  # noqa: E402

# A failed orbax restore leaves coroutines behind that report a closed event loop when they are
# collected, possibly during a later test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

WORKER = Path(__file__).parent / "checkpoint_worker.py"
CONFIG = {"model": {"ch": 96, "blocks": (1, 2)}, "train": {"steps": 10}}


def make_state(step: int, mesh: jax.sharding.Mesh) -> dict:
    abstract = abstract_state(mesh)
    w = jax.device_put(initial_weights() + step, abstract["w"].sharding)
    key = jax.device_put(jax.random.key(step), abstract["key"].sharding)
    return {"w": w, "step": np.int32(step), "key": key}


@pytest.fixture
def mesh() -> jax.sharding.Mesh:
    return jax.make_mesh((8,), ("data",))


def files_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
    }


def test_save_is_async_safe_and_restore_reshards(tmp_path, mesh):
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        state = make_state(7, mesh)
        assert ckpt.save(7, state)
        jax.tree.map(lambda x: x.delete() if isinstance(x, jax.Array) else None, state)
        ckpt.wait_until_finished()
        assert ckpt.latest_step() == 7
        # Restore onto another mesh and sharding than the one saved.
        other = jax.make_mesh((2, 4), ("data", "b"))
        abstract = abstract_state(other)
        abstract["w"] = jax.ShapeDtypeStruct(
            abstract["w"].shape, jnp.float32, sharding=NamedSharding(other, PartitionSpec("b"))
        )
        restored = ckpt.restore(abstract)
        assert ckpt.config() == {"model": {"ch": 96, "blocks": [1, 2]}, "train": {"steps": 10}}
    assert restored["w"].sharding == abstract["w"].sharding
    np.testing.assert_array_equal(np.asarray(restored["w"]), initial_weights() + 7)
    assert int(restored["step"]) == 7
    np.testing.assert_array_equal(
        jax.random.key_data(restored["key"]), jax.random.key_data(jax.random.key(7))
    )
    assert checkpoint.saved_config(tmp_path, 7) == checkpoint.config_to_json(CONFIG)


def test_save_every_force_and_never_overwrite(tmp_path, mesh):
    with Checkpointer(tmp_path, save_every=2) as ckpt:
        assert not ckpt.save(1, make_state(1, mesh))
        assert ckpt.save(2, make_state(2, mesh))
        assert ckpt.save(3, make_state(3, mesh), force=True)
        assert not ckpt.save(2, make_state(99, mesh), force=True)
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [2, 3]
        restored = ckpt.restore(abstract_state(mesh), step=2)
    np.testing.assert_array_equal(np.asarray(restored["w"]), initial_weights() + 2)


def test_max_to_keep_and_keep_period(tmp_path, mesh):
    with Checkpointer(tmp_path, max_to_keep=2, keep_period=3, async_save=False) as ckpt:
        for step in range(1, 8):
            ckpt.save(step, make_state(step, mesh))
        assert ckpt.all_steps() == [3, 6, 7]


def test_incompatible_config_lists_fields_and_leaves_workdir_untouched(tmp_path, mesh):
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        ckpt.save(5, make_state(5, mesh))
    checkpoint.mark_training_finished(tmp_path)
    before = files_snapshot(tmp_path)
    changed = {"model": {"ch": 64, "blocks": (1, 2), "attention": True}, "train": {"steps": 10}}
    with pytest.raises(IncompatibleCheckpointError) as error:
        Checkpointer(tmp_path, config=changed)
    message = str(error.value)
    assert "model.ch: checkpoint 96 vs config 64" in message
    assert "model.attention: checkpoint '<missing>' vs config True" in message
    assert "blocks" not in message
    assert files_snapshot(tmp_path) == before
    # Only the architecture matters: another step count resumes.
    longer = {"model": {"ch": 96, "blocks": [1, 2]}, "train": {"steps": 20}}
    with Checkpointer(tmp_path, config=longer) as ckpt:
        assert ckpt.latest_step() == 5
    assert not checkpoint.training_finished(tmp_path), "a new writer clears the finished marker"


def test_restore_shape_mismatch_names_the_leaves(tmp_path, mesh):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, make_state(1, mesh))
        ckpt.wait_until_finished()
        abstract = abstract_state(mesh)
        abstract["w"] = jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=abstract["w"].sharding)
        with pytest.raises(ValueError, match=r"w: checkpoint \(16, 4\) vs target \(8, 4\)"):
            ckpt.restore(abstract)
    with pytest.raises(FileNotFoundError):
        Checkpointer(tmp_path / "empty").restore(abstract_state(mesh))


def test_half_written_checkpoint_is_never_read(tmp_path, mesh):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, make_state(1, mesh))
        ckpt.save(2, make_state(2, mesh))
    # An interrupted save of step 3: orbax's temporary directory with part of the files.
    directory = tmp_path / checkpoint.CHECKPOINT_DIR
    partial = directory / "3.orbax-checkpoint-tmp-1234567"
    shutil.copytree(directory / "2", partial)
    (partial / "commit_success.txt").unlink(missing_ok=True)
    shutil.rmtree(partial / "state" / "ocdbt.process_0", ignore_errors=True)

    assert checkpoint.complete_steps(tmp_path) == [1, 2]
    steps = checkpoint.follow_checkpoints(tmp_path, poll_seconds=0.01, timeout_seconds=0)
    assert list(steps) == [1, 2]
    reader = Checkpointer(tmp_path, read_only=True)
    assert reader.latest_step() == 2
    restored = reader.restore(abstract_state(mesh))
    np.testing.assert_array_equal(np.asarray(restored["w"]), initial_weights() + 2)
    assert partial.exists(), "a reader must not touch the writer's temporary directories"
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.save(3, make_state(3, mesh))
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [1, 2, 3]
    assert not partial.exists(), "a new writer removes leftovers of an interrupted save"


def test_follow_checkpoints_yields_each_new_step_then_stops_at_marker(tmp_path, mesh):
    def train():
        with Checkpointer(tmp_path) as ckpt:
            for step in (10, 20, 30):
                time.sleep(0.2)
                ckpt.save(step, make_state(step, mesh))
            ckpt.wait_until_finished()
        checkpoint.mark_training_finished(tmp_path)

    trainer = threading.Thread(target=train)
    trainer.start()
    seen = list(checkpoint.follow_checkpoints(tmp_path, poll_seconds=0.05, timeout_seconds=30))
    trainer.join()
    assert seen == [10, 20, 30]
    assert list(checkpoint.follow_checkpoints(tmp_path, start_after=20, timeout_seconds=30)) == [30]


def test_follow_checkpoints_times_out_without_new_steps(tmp_path):
    start = time.monotonic()
    steps = checkpoint.follow_checkpoints(tmp_path, poll_seconds=0.05, timeout_seconds=0.3)
    assert list(steps) == []
    assert 0.3 <= time.monotonic() - start < 5


def test_steps_to_evaluate_one_step_the_latest_or_each_as_written(tmp_path, mesh):
    with Checkpointer(tmp_path) as ckpt:
        for step in (10, 20):
            ckpt.save(step, make_state(step, mesh))
        ckpt.wait_until_finished()
    assert list(checkpoint.steps_to_evaluate(tmp_path, step=10, latest_only=True)) == [10]
    assert list(checkpoint.steps_to_evaluate(tmp_path, latest_only=True)) == [20]
    checkpoint.mark_training_finished(tmp_path)
    assert list(checkpoint.steps_to_evaluate(tmp_path, timeout_seconds=30)) == [10, 20]


def test_preemption_handler_single_process():
    previous = signal.getsignal(signal.SIGTERM)
    with PreemptionHandler() as preemption:
        assert not preemption.should_stop(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.should_stop(2) and preemption.received
    assert signal.getsignal(signal.SIGTERM) == previous


def start_worker(workdir: Path, log: Path, *args: str) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, str(WORKER), f"--workdir={workdir}", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=worker_env(),
            cwd=REPO,
        )


def wait_for_line(log: Path, prefix: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith(prefix):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no line {prefix!r} in {log}:\n{log.read_text()[-3000:]}")


def finish(process: subprocess.Popen, log: Path) -> None:
    assert process.wait(timeout=60) == 0, log.read_text()[-3000:]


def stopped_step(log: Path) -> int:
    return int(wait_for_line(log, "stopped ").split()[1])


def test_sigterm_saves_and_exits_cleanly(tmp_path, mesh):
    log = tmp_path / "log"
    process = start_worker(tmp_path / "run", log, "--devices=8")
    wait_for_line(log, "step 3")
    process.send_signal(signal.SIGTERM)
    finish(process, log)
    step = stopped_step(log)
    ckpt = Checkpointer(tmp_path / "run", read_only=True)
    assert ckpt.all_steps() == [step]
    restored = ckpt.restore(abstract_state(mesh))
    np.testing.assert_array_equal(np.asarray(restored["w"]), initial_weights() + step)
    assert not checkpoint.training_finished(tmp_path / "run")


def test_sigkill_during_saves_resumes_from_last_complete(tmp_path):
    workdir, log = tmp_path / "run", tmp_path / "log"
    rows = 1 << 18  # 4 MiB per checkpoint, saved every step, so a kill often hits a save.
    args = [f"--rows={rows}", "--save-every=1", "--step-seconds=0", "--steps=1000"]
    process = start_worker(workdir, log, *args)
    wait_for_line(log, "step 5")
    process.kill()
    process.wait(timeout=60)
    steps = checkpoint.complete_steps(workdir)
    assert steps and steps[-1] >= 4
    process = start_worker(workdir, log, *args[:-1], f"--steps={steps[-1] + 2}")
    finish(process, log)
    resumed = int(log.read_text().split("step ")[1].split()[0])
    assert resumed == steps[-1] + 1
    mesh = jax.make_mesh((8,), ("data",))
    restored = Checkpointer(workdir, read_only=True).restore(abstract_state(mesh, (rows, 4)))
    np.testing.assert_array_equal(
        np.asarray(restored["w"]), initial_weights((rows, 4)) + steps[-1] + 2
    )
    assert checkpoint.training_finished(workdir)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_processes(workdir: Path, tmp_path: Path, *args: str) -> list[tuple]:
    port = free_port()
    runs = []
    for process_id in (0, 1):
        log = tmp_path / f"log{process_id}-{port}"
        flags = ["--num-processes=2", f"--process-id={process_id}", f"--port={port}", *args]
        runs.append((start_worker(workdir, log, *flags), log))
    return runs


def test_two_processes_agree_on_sigterm_and_resume(tmp_path, mesh):
    """One process alone gets SIGTERM; both stop at the same step and save together.

    First run: JAX's preemption sync service, process 1 signalled; resumed run: the allgather
    fallback, process 0 signalled. The last checkpoint (4 + 4 devices) then restores in this
    single 8-device process.
    """
    workdir = tmp_path / "run"
    runs = two_processes(workdir, tmp_path)
    wait_for_line(runs[1][1], "step 3")
    runs[1][0].send_signal(signal.SIGTERM)
    for process, log in runs:
        finish(process, log)
    first = {stopped_step(log) for _, log in runs}
    assert len(first) == 1
    runs = two_processes(workdir, tmp_path, "--no-preemption-service")
    wait_for_line(runs[0][1], f"step {first.pop() + 3}")
    runs[0][0].send_signal(signal.SIGTERM)
    for process, log in runs:
        finish(process, log)
    second = {stopped_step(log) for _, log in runs}
    assert len(second) == 1
    step = second.pop()
    ckpt = Checkpointer(workdir, read_only=True)
    assert ckpt.latest_step() == step
    restored = ckpt.restore(abstract_state(mesh))
    np.testing.assert_array_equal(np.asarray(restored["w"]), initial_weights() + step)


def test_relative_workdir_saves_and_restores(tmp_path, mesh, monkeypatch):
    """The README's commands pass workdirs like ``workdirs/digits`` (orbax needs absolute)."""
    monkeypatch.chdir(tmp_path)
    with Checkpointer("runs/relative", config=CONFIG) as ckpt:
        assert ckpt.save(3, make_state(3, mesh))
        ckpt.wait_until_finished()
    with Checkpointer("runs/relative", read_only=True) as ckpt:
        assert ckpt.latest_step() == 3
        restored = ckpt.restore(abstract_state(mesh))
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(initial_weights() + 3))
    assert (tmp_path / "runs" / "relative" / "checkpoints" / "3").is_dir()
