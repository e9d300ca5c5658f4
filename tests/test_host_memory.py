"""gencore.host_memory: when a job configures its process, and that freed memory is then reused
(by malloc, and by a jitted program's temporary buffer)."""

import json
import subprocess
import sys
import types

import pytest
from helpers import worker_env

from gencore import host_memory

# Allocates, touches and frees 256 MB three times with the C library's malloc; prints the
# page faults each round took (after `reuse_freed_memory` when argv[1] == "reuse").
ROUNDS_SCRIPT = """
import ctypes, json, resource, sys
from gencore import host_memory
applied = sys.argv[1] == "reuse" and host_memory.reuse_freed_memory()
libc = host_memory.glibc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size, faults = 256 << 20, []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def page_faults(mode: str, script: str = ROUNDS_SCRIPT) -> dict:
    out = subprocess.run([sys.executable, "-c", script, mode], env=worker_env(),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(host_memory.glibc() is None, reason="mallopt is glibc's")
def test_freed_block_is_reused_without_page_faults():
    plain, reused = page_faults("plain"), page_faults("reuse")
    assert not plain["applied"] and reused["applied"]
    # Without it every round maps the block afresh and faults on its pages (4 KB pages:
    # 65,536; 2 MB huge pages: 128); with it only the first round does.
    assert min(plain["faults"]) >= 100
    assert max(reused["faults"][1:]) <= min(plain["faults"]) // 10


# A jitted program with a 512 MB temporary buffer, run six times; prints the page faults of
# each run (after `configure_cpu_process` when argv[1] == "configure").
PROGRAM_SCRIPT = """
import json, resource, sys
import jax, jax.numpy as jnp
from gencore import host_memory
configured = sys.argv[1] == "configure" and host_memory.configure_cpu_process()

@jax.jit
def program(x):
    doubled = jax.lax.optimization_barrier(x * 2.0)
    return jnp.sum(jax.lax.optimization_barrier(jnp.sin(doubled)) * doubled)

x = jnp.ones((64 << 20,), jnp.float32)
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    program(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": configured, "faults": faults,
                  "async": jax.config.values["jax_cpu_enable_async_dispatch"]}))
"""


@pytest.mark.skipif(host_memory.glibc() is None, reason="mallopt is glibc's")
def test_configured_process_reuses_a_programs_temporary_buffer():
    plain, configured = page_faults("plain", PROGRAM_SCRIPT), page_faults("configure",
                                                                          PROGRAM_SCRIPT)
    assert plain["async"] and configured["applied"] and not configured["async"]
    assert min(plain["faults"]) >= 100
    # Configured, the heap settles within a few runs and then serves the buffer again.
    assert max(configured["faults"][-2:]) <= min(plain["faults"]) // 10


def fake_jax(platforms):
    return types.SimpleNamespace(config=types.SimpleNamespace(jax_platforms=platforms))


@pytest.mark.parametrize("platforms,expected", [
    ("cpu", True), ("cpu, cpu", True), ("tpu,cpu", False), ("cuda", False)])
def test_cpu_only_follows_jax_platforms(monkeypatch, platforms, expected):
    monkeypatch.setattr(host_memory, "jax", fake_jax(platforms))
    assert host_memory.cpu_only() is expected


@pytest.mark.parametrize("installed,expected", [
    ((), True), (("libtpu",), False), (("jax_plugins",), False)])
def test_cpu_only_without_platforms_looks_for_accelerator_plugins(monkeypatch, installed,
                                                                  expected):
    monkeypatch.setattr(host_memory, "jax", fake_jax(None))
    monkeypatch.setattr(host_memory.importlib.util, "find_spec",
                        lambda name: object() if name in installed else None)
    monkeypatch.setattr(host_memory.importlib.metadata, "entry_points", lambda group: ())
    assert host_memory.cpu_only() is expected


def test_cpu_only_sees_a_plugin_entry_point(monkeypatch):
    monkeypatch.setattr(host_memory, "jax", fake_jax(None))
    monkeypatch.setattr(host_memory.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(host_memory.importlib.metadata, "entry_points",
                        lambda group: ("xla_cuda12",) if group == "jax_plugins" else ())
    assert host_memory.cpu_only() is False
