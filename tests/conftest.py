"""Test setup: 8 fake CPU devices, so sharded code runs as on a pod slice, and a persistent
XLA compilation cache shared by the test workers and the jobs they start, so a train step
compiled once (e.g. before and after a resume) is not compiled again."""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "biggan-diffusion-jax-test-xla-cache"))
