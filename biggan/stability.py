"""Training-loop hooks for the stability analysis of Brock et al. 2018 (Sec. 4, Appendix F).

- Spectral monitoring: every ``config.train.spectra_every`` steps, the top three singular values
  of every weight (``biggan.spectra.spectra``) go to the metric writer as
  'spectra/<net>/<weight>/sigma<i>' and to ``<workdir>/spectra.jsonl``, one line per record:
  ``{"step": s, "spectra": {net: {weight: [sigma0, sigma1, sigma2]}}}`` (after a resume, a later
  line for the same step replaces the earlier one).
- Collapse detection (`CollapseDetector`): G's sigma0 exploding relative to its recent history,
  or D's loss jumping above its recent mean. The first detection of a run appends
  ``{"step", "reason", "stop"}`` to ``<workdir>/collapse.json`` (a list) and logs it; every
  checkpoint saved so far is then kept from deletion (listed in
  ``<workdir>/kept_checkpoints.json``), so the last good one, and the eval job's best-FID one if
  still there, survive; with ``config.train.stop_on_collapse`` training stops without saving
  the collapsed state (the paper's early stopping).

``config.train`` fields: spectra_every (0: off), spectra_iterations, collapse_sigma0_factor
(0: off), collapse_d_loss_jump (0: off), collapse_window, stop_on_collapse.
"""

import collections
import json
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
from absl import logging
from etils import epath

from gencore.hooks import HookResult, PeriodicHook
from gencore.sharding import first_process_array

SPECTRA_FILE = "spectra.jsonl"
COLLAPSE_FILE = "collapse.json"
SPECTRA_PREFIX = "spectra"
SpectraFn = Callable[[Any], dict[str, dict[str, jax.Array]]]
"""state -> {net: {weight name: sigma [3]}} (jitted)."""


def validate_stability_config(train: ml_collections.ConfigDict) -> None:
    """Fail before any compile with a message naming the ``config.train`` field."""
    for field in ("spectra_every", "collapse_sigma0_factor", "collapse_d_loss_jump"):
        if train[field] < 0:
            raise ValueError(f"config.train.{field}={train[field]} must be >= 0 (0: off).")
    for field in ("spectra_iterations", "collapse_window"):
        if train[field] < 1:
            raise ValueError(f"config.train.{field}={train[field]} must be >= 1.")
    if train.collapse_sigma0_factor:
        if train.collapse_sigma0_factor <= 1:
            raise ValueError(f"config.train.collapse_sigma0_factor={train.collapse_sigma0_factor}"
                             " must be > 1 (sigma0 over its recent median), or 0 for off.")
        if not train.spectra_every:
            raise ValueError("config.train.collapse_sigma0_factor > 0 watches the logged "
                             "singular values: set config.train.spectra_every > 0 too.")


def spectra_scalars(record: dict[str, dict[str, Sequence[float]]]) -> dict[str, float]:
    """{'spectra/<net>/<weight>/sigma<i>': value} of one record."""
    return {f"{SPECTRA_PREFIX}/{net}/{name}/sigma{i}": float(value)
            for net, weights in record.items() for name, sigmas in weights.items()
            for i, value in enumerate(sigmas)}


def read_spectra(workdir: str) -> list[dict[str, Any]]:
    """The records of ``<workdir>/spectra.jsonl`` by ascending step, the last line of a step
    winning (a resumed run repeats the steps after its checkpoint)."""
    by_step = {}
    for line in (epath.Path(workdir) / SPECTRA_FILE).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


def spectra_hook(workdir: str, every: int, compute: SpectraFn) -> PeriodicHook:
    """Logs ``compute(state)`` every ``every`` steps (scalars and the JSON-lines file)."""
    path = epath.Path(workdir) / SPECTRA_FILE
    lines: list[str] = []   # the file's lines, rewritten whole (GCS files cannot be appended to)

    def run(step: int, state: Any, scalars: dict[str, float]) -> HookResult:
        del scalars
        values = jax.tree_util.tree_map(first_process_array, compute(state))
        record = {net: {name: [float(s) for s in sigmas] for name, sigmas in weights.items()}
                  for net, weights in values.items()}
        if jax.process_index() == 0:
            if not lines and path.exists():
                lines.extend(path.read_text().splitlines())
            lines.append(json.dumps({"step": step, "spectra": record}))
            path.write_text("\n".join(lines) + "\n")
        return HookResult(scalars=spectra_scalars(record))

    return PeriodicHook(every, run)


class CollapseDetector:
    """Collapse signs in a stream of logged scalars (Sec. 4, Appendix F).

    sigma0: each scalar '<sigma0_prefix>/<weight>/sigma0' is compared with the median of its last
    ``window`` values: collapse if it exceeds ``sigma0_factor`` times that median.
    D's loss: the sum of ``loss_keys`` is compared with the mean of its last ``window`` values:
    collapse if it exceeds that mean by more than ``loss_jump``. A factor or jump of 0 turns that
    test off; no test fires before ``window`` earlier values exist.
    """

    def __init__(self, sigma0_factor: float, loss_jump: float, window: int,
                 sigma0_prefix: str = f"{SPECTRA_PREFIX}/G/",
                 loss_keys: Sequence[str] = ("d_loss_real", "d_loss_fake")):
        self.sigma0_factor, self.loss_jump, self.window = sigma0_factor, loss_jump, window
        self.sigma0_prefix, self.loss_keys = sigma0_prefix, tuple(loss_keys)
        self.history: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=window))

    def _past(self, key: str, value: float) -> list[float] | None:
        """The ``window`` values of ``key`` before ``value`` (None until there are that many);
        then records ``value``."""
        past = list(self.history[key])
        self.history[key].append(value)
        return past if len(past) == self.window else None

    def update(self, scalars: dict[str, float]) -> str | None:
        """Adds one step's scalars; returns why this step looks collapsed, or None."""
        reasons = []
        if self.sigma0_factor:
            for key in sorted(k for k in scalars
                              if k.startswith(self.sigma0_prefix) and k.endswith("/sigma0")):
                value, past = scalars[key], self._past(key, scalars[key])
                if past and value > self.sigma0_factor * statistics.median(past):
                    reasons.append(f"{key}={value:.4g} > {self.sigma0_factor:g} x its median "
                                   f"{statistics.median(past):.4g} over the last {self.window} "
                                   "records")
        if self.loss_jump and all(k in scalars for k in self.loss_keys):
            loss = sum(scalars[k] for k in self.loss_keys)
            past = self._past("+".join(self.loss_keys), loss)
            if past and loss > statistics.fmean(past) + self.loss_jump:
                reasons.append(f"D loss {loss:.4g} > its mean {statistics.fmean(past):.4g} over "
                               f"the last {self.window} logs + {self.loss_jump:g}")
        return "; ".join(reasons) or None


def collapse_hook(workdir: str, detector: CollapseDetector, stop: bool) -> PeriodicHook:
    """Runs ``detector`` on every step's logged scalars; on its first detection records the
    collapse in ``<workdir>/collapse.json``, keeps the checkpoints and stops if ``stop``."""
    path = epath.Path(workdir) / COLLAPSE_FILE
    detected = False

    def run(step: int, state: Any, scalars: dict[str, float]) -> HookResult | None:
        nonlocal detected
        del state
        reason = detector.update(scalars) if scalars else None
        if detected or reason is None:
            return None
        detected = True
        event = {"step": step, "reason": reason, "stop": stop}
        logging.warning("Training collapse detected at step %d: %s. Keeping every checkpoint "
                        "saved so far%s.", step, reason, "; stopping" if stop else "")
        if jax.process_index() == 0:
            events = json.loads(path.read_text()) if path.exists() else []
            path.write_text(json.dumps([*events, event], indent=2))
        return HookResult(keep_checkpoints=True, stop=stop)

    return PeriodicHook(1, run)


def stability_hooks(train: ml_collections.ConfigDict, workdir: str, compute_spectra: SpectraFn,
                    loss_keys: Sequence[str] = ("d_loss_real", "d_loss_fake"),
                    ) -> list[PeriodicHook]:
    """The hooks ``config.train`` turns on (none by default), spectra before collapse."""
    validate_stability_config(train)
    hooks = []
    if train.spectra_every:
        hooks.append(spectra_hook(workdir, train.spectra_every, compute_spectra))
    if train.collapse_sigma0_factor or train.collapse_d_loss_jump:
        detector = CollapseDetector(train.collapse_sigma0_factor, train.collapse_d_loss_jump,
                                    train.collapse_window, loss_keys=loss_keys)
        hooks.append(collapse_hook(workdir, detector, train.stop_on_collapse))
    return hooks
