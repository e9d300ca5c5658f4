"""Periodic hooks: model-specific work the training loop runs every N steps.

A hook adds extra scalars (e.g. singular values of the weights), keeps the checkpoints saved so
far, or stops training (e.g. at a collapse). The loop (`gencore.training.run_training`) runs
them after each step's logging, in order.
"""

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class HookResult:
    """What a periodic hook asks of the training loop.

    scalars: written to the metric writer at this step (and passed to later hooks);
    keep_checkpoints: never delete the checkpoints saved so far (`Checkpointer.keep`);
    stop: end training after this step without saving it, and mark the run finished.
    """

    scalars: dict[str, float] = dataclasses.field(default_factory=dict)
    keep_checkpoints: bool = False
    stop: bool = False


@dataclasses.dataclass(frozen=True)
class PeriodicHook:
    """``run(step, state, scalars)`` after every step that is a multiple of ``every`` (0: never).

    ``scalars`` holds what was logged at this step so far: the step's metrics on logging steps
    (every ``train.log_every``) and earlier hooks' scalars; {} otherwise. Every process calls
    it; results must agree across processes.
    """

    every: int
    run: Callable[[int, Any, dict[str, float]], HookResult | None]
