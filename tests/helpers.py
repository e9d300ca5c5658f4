"""Shared by the BigGAN and diffusion training tests: tiny configs, running a few sharded
steps, comparing pytrees, restoring a workdir's final state, exact resume, and running a train
job as 1 process x 8 CPU devices and as 2 processes x 4 (jax.distributed over loopback)."""

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from gencore import sharding
from gencore.checkpoint import Checkpointer
from gencore.config_util import load_config
from gencore.training import abstract_like

JOB_TIMEOUT_S = 600
REPO = Path(__file__).resolve().parents[1]


def config_with(spec: str, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """The config ``spec`` with ``{'section.field': value}`` overrides applied."""
    config = load_config(spec)
    for key, value in overrides.items():
        section, field = key.split(".")
        config[section][field] = value
    return config


def run_steps(train_module: ModuleType, config: ml_collections.ConfigDict,
              devices: list[jax.Device], batches: Iterable[dict], batch_spec: PartitionSpec
              ) -> tuple[Any, dict, Any]:
    """(final state, last metrics, initial state) on host after one step per batch on a mesh
    of ``devices``; ``train_module`` has ``create_train_state`` and ``make_train_step``."""
    mesh = sharding.make_mesh(devices)
    state = train_module.create_train_state(config, mesh)
    initial = jax.device_get(state)
    step = train_module.make_train_step(config, mesh)
    placement = NamedSharding(mesh, batch_spec)
    for batch in batches:
        state, metrics = step(state, jax.device_put(batch, placement))
    return jax.device_get(state), jax.device_get(metrics), initial


def assert_trees_close(a: Any, b: Any, atol: float) -> None:
    """Same structure, every leaf within ``atol``."""
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol)


def largest_difference(a: Any, b: Any) -> float:
    """max |a - b| over every leaf of two pytrees of the same structure."""
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b),
                               strict=True))


def restore_final_state(create_train_state: Callable, config: ml_collections.ConfigDict,
                        workdir: str | Path) -> Any:
    """The latest checkpoint of ``workdir`` on host, shaped as ``create_train_state`` makes it."""
    target = abstract_like(create_train_state(config, sharding.make_mesh()))
    with Checkpointer(str(workdir), read_only=True) as checkpointer:
        return jax.device_get(checkpointer.restore(target))


def assert_resume_is_exact(train_and_evaluate: Callable, create_train_state: Callable,
                           make_config: Callable[[int], ml_collections.ConfigDict],
                           root: Path) -> None:
    """4 steps in one go == 2 steps, stop, then resume to 4 in the same workdir, bit for bit;
    ``make_config(steps)`` is the run's config with ``train.steps = steps``."""
    straight = make_config(4)
    train_and_evaluate(straight, str(root / "straight"))
    train_and_evaluate(make_config(2), str(root / "resumed"))
    train_and_evaluate(straight, str(root / "resumed"))
    a = restore_final_state(create_train_state, straight, root / "straight")
    b = restore_final_state(create_train_state, straight, root / "resumed")
    assert int(a.step) == int(b.step) == 4
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert (root / "straight" / "samples" / "ema_00000004.png").exists()


def worker_env() -> dict[str, str]:
    """The environment for a test's worker script: this checkout importable, CPU only, and no
    ``XLA_FLAGS`` (the worker sets its own device count)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(command: Callable[[int, int], list[str]]) -> list[str]:
    """Runs ``command(process_id, coordinator_port)`` for process ids 0 and 1 at once (with
    `worker_env`); asserts that both exit 0 and returns their stdouts."""
    port = free_port()
    procs = [subprocess.Popen(command(i, port), env=worker_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=JOB_TIMEOUT_S)
        assert p.returncode == 0, err[-3000:]
        outputs.append(out)
    return outputs


def train_one_and_two_processes(main_module: str, config_file: str,
                                overrides: Mapping[str, Any], root: Path) -> tuple[Path, Path]:
    """Runs ``python -m <main_module> --config=<config_file> --config.<key>=<value>...`` as one
    process with 8 CPU devices in ``root/one``, then as two processes with 4 each in
    ``root/two``; asserts that every process exits 0 and returns the two workdirs."""
    def command(workdir: Path, *flags: str) -> list[str]:
        return [sys.executable, "-m", main_module, f"--config={config_file}",
                f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in overrides.items()),
                *flags]

    single = subprocess.run(command(root / "one", "--cpu_devices=8"), env=worker_env(),
                            capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert single.returncode == 0, single.stderr[-3000:]
    run_two_processes(lambda i, port: command(
        root / "two", "--cpu_devices=4", f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2", f"--process_id={i}"))
    return root / "one", root / "two"
