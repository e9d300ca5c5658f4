"""SIGTERM (TPU preemption notice) handling: every process agrees on the step to stop at.

Usage in a training loop (every process runs the same steps)::

    with PreemptionHandler() as preemption:
        for step in range(start, steps):
            state = train_step(state, ...)
            stop = preemption.should_stop(step + 1)
            checkpointer.save(step + 1, state, force=stop or step + 1 == steps)
            if stop:
                break
    checkpointer.wait_until_finished()   # then exit 0

How the processes agree:
- one process: a Python SIGTERM handler sets a flag, `should_stop` returns it.
- several processes (after `jax.distributed.initialize`), with JAX's preemption service (on by
  default, `jax_enable_preemption_service`): JAX's own SIGTERM notifier tells the coordination
  service, which picks a step every process reaches; `should_stop` is
  `multihost_utils.reached_preemption_sync_point(step)`, true on all processes at that same step.
  Nothing is exchanged per step, so asynchronous dispatch is not slowed down.
- several processes without that service: a Python handler sets a local flag and `should_stop`
  takes the maximum over processes with `process_allgather` (a collective every call).
"""

from __future__ import annotations

import signal
import types

import jax
import numpy as np
from jax.experimental import multihost_utils


def _uses_jax_preemption_service() -> bool:
    return jax.process_count() > 1 and bool(jax.config.jax_enable_preemption_service)


class PreemptionHandler:
    """Context manager that turns SIGTERM into a clean stop agreed by all processes.

    Enter it after `jax.distributed.initialize`. Every process must call `should_stop` with the
    same sequence of steps (once per training step, starting from the same step).
    """

    def __init__(self) -> None:
        self._received = False
        self._previous: signal.Handlers | int | None = None
        self._installed = False

    def _on_sigterm(self, signum: int, frame: types.FrameType | None) -> None:
        del signum, frame
        self._received = True

    def __enter__(self) -> PreemptionHandler:
        if not _uses_jax_preemption_service():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    @property
    def received(self) -> bool:
        """Whether this process got SIGTERM (always False under JAX's preemption service)."""
        return self._received

    def should_stop(self, step: int) -> bool:
        """True on every process at the same `step` once any process got SIGTERM."""
        if _uses_jax_preemption_service():
            return multihost_utils.reached_preemption_sync_point(int(step))
        if jax.process_count() == 1:
            return self._received
        flags = multihost_utils.process_allgather(np.int32(self._received))
        return bool(np.max(flags))
