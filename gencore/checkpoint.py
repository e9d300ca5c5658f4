"""Checkpoints shared by every model: orbax save/restore, config compatibility, eval following.

Layout of a workdir::

    <workdir>/checkpoints/<step>/state     the training state (sharded arrays, numpy scalars)
    <workdir>/checkpoints/<step>/config    the run's config as JSON
    <workdir>/TRAINING_FINISHED            written once the last checkpoint is committed
    <workdir>/kept_checkpoints.json        steps that `Checkpointer.keep` exempts from deletion

Orbax writes each step into a temporary directory (``<step>.orbax-checkpoint-tmp-*``) and
renames it once every process has written its shards (on GCS, where renames are not atomic, it
writes a ``commit_success.txt`` marker last instead), so a save cut short by a SIGKILL or a
preemption never shows up as a step: `Checkpointer.latest_step`, `Checkpointer.restore` and
`follow_checkpoints` only ever see complete checkpoints.

Multi-host: every process calls `Checkpointer.save` / `Checkpointer.restore` with the same
step and the same global `jax.Array` tree; each process writes and reads only the shards it
addresses, and orbax synchronises the processes before the commit. Restoring into an abstract
tree whose leaves carry another sharding (another mesh, another process count) reshards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

CHECKPOINT_DIR = "checkpoints"
FINISHED_MARKER = "TRAINING_FINISHED"
KEPT_FILE = "kept_checkpoints.json"
_STATE = "state"
_CONFIG = "config"
T = TypeVar("T")


class IncompatibleCheckpointError(ValueError):
    """The workdir holds checkpoints of a model that the current config cannot restore."""


class UnreadableCheckpointError(RuntimeError):
    """A checkpoint's files cannot be read: missing, truncated or with bad metadata."""

    def __init__(self, step: int, directory: epath.Path, cause: BaseException):
        reason = " ".join(str(cause).split())[:300] or type(cause).__name__
        super().__init__(f"Checkpoint {step} in {directory} cannot be read "
                         f"({type(cause).__name__}: {reason})")
        self.step = step


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed (disk full, permissions, a failing writer)."""


def checkpoint_dir(workdir: epath.PathLike) -> epath.Path:
    """Where the checkpoints of `workdir` live (local path or ``gs://`` URL)."""
    return epath.Path(workdir) / CHECKPOINT_DIR


def config_to_json(config: Any) -> dict[str, Any]:
    """A JSON-compatible nested dict of a ConfigDict or mapping (tuples become lists)."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()

    def default(value: Any) -> Any:
        return value.item() if isinstance(value, np.generic) else repr(value)

    return json.loads(json.dumps(dict(config), default=default))


def _flatten(tree: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


_MISSING = "<missing>"


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], sections: Sequence[str]
) -> list[str]:
    """Lines ``'model.ch: checkpoint 96 vs config 64'`` for each field of `sections` that differs.

    Both configs are JSON dicts (`config_to_json`); a section missing on one side counts as empty.
    """
    lines = []
    for section in sections:
        old = _flatten(saved.get(section, {}), section)
        new = _flatten(current.get(section, {}), section)
        for key in sorted(old.keys() | new.keys()):
            if old.get(key, _MISSING) != new.get(key, _MISSING):
                lines.append(
                    f"{key}: checkpoint {old.get(key, _MISSING)!r} vs config "
                    f"{new.get(key, _MISSING)!r}"
                )
    return lines


def complete_steps(workdir: epath.PathLike) -> list[int]:
    """Steps of the complete checkpoints in `workdir`, ascending (half-written ones excluded).

    Only lists the directory: safe to call from any subset of processes.
    """
    directory = checkpoint_dir(workdir)
    if not directory.exists():
        return []
    return sorted(ocp.path.step.checkpoint_steps(directory))


def saved_config(workdir: epath.PathLike, step: int | None = None) -> dict[str, Any] | None:
    """The config stored with checkpoint `step` (default: the newest complete checkpoint whose
    config can be read), or None.

    Reads the files directly (no orbax manager, so no cross-process barrier): processes may call
    it independently, e.g. while another process is already creating the checkpoint directory.
    """
    if step is None:
        for newest in reversed(complete_steps(workdir)):
            try:
                return saved_config(workdir, newest)
            except Exception as error:   # a damaged file: that step is skipped or moved aside
                logging.warning("The config of checkpoint %d in %s cannot be read (%s)", newest,
                                checkpoint_dir(workdir), error)
        return None
    name_format = ocp.path.step.standard_name_format()
    item = ocp.path.step.build_step_path(checkpoint_dir(workdir), name_format, step) / _CONFIG
    if not item.exists():
        return None
    return dict(ocp.JsonCheckpointHandler().restore(item, args=ocp.args.JsonRestore()))


def resolve_run(workdir: epath.PathLike, step: int | None = None, config: Any = None
                ) -> tuple[int, Any]:
    """(step, config) of a run's checkpoint: ``step`` or the latest complete one, and ``config``
    or the ConfigDict saved with that checkpoint. Raises FileNotFoundError without one."""
    steps = complete_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"No complete checkpoint in {workdir}.")
    step = steps[-1] if step is None else step
    if config is None:
        config = ml_collections.ConfigDict(saved_config(workdir, step))
    return step, config


def restore_read_only(workdir: epath.PathLike, create_state: Callable[[], Any],
                      step: int | None, placement: jax.sharding.Sharding) -> Any:
    """Checkpoint ``step`` (None: the latest) of ``workdir``, every array placed with
    ``placement`` (e.g. replicated over the job's mesh), shaped as ``create_state()`` makes the
    state (traced with ``jax.eval_shape``: nothing is allocated). Opens the checkpoints
    read-only, so an eval or sampling job never alters a run."""
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=placement),
        jax.eval_shape(create_state))
    with Checkpointer(workdir, read_only=True) as ckpt:
        return ckpt.restore(abstract, step)


def check_compatible(
    workdir: epath.PathLike, config: Any, sections: Sequence[str] = ("model",)
) -> None:
    """Raises `IncompatibleCheckpointError` if the latest checkpoint has another architecture.

    Compares every field of `sections` between the config saved with the latest checkpoint
    whose config is readable and `config`; the message lists each difference. Reads only: the
    workdir is never modified.
    """
    saved = saved_config(workdir)
    if saved is None:
        return
    differences = config_differences(saved, config_to_json(config), sections)
    if differences:
        raise IncompatibleCheckpointError(
            f"The checkpoints in {checkpoint_dir(workdir)} were written with a different "
            f"{'/'.join(sections)} config, so they cannot be restored:\n  "
            + "\n  ".join(differences)
            + "\nUse a new --workdir, or pass the checkpoint's values as config overrides."
        )


def _path_string(path: Sequence[Any]) -> str:
    parts = []
    for entry in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
        else:
            parts.append(str(entry))
    return ".".join(parts)


def _stored_shape(leaf: Any) -> tuple[int, ...]:
    # Typed PRNG keys are stored as their raw key data, which has trailing dimensions.
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        return tuple(jax.eval_shape(jax.random.key_data, leaf).shape)
    return tuple(np.shape(leaf))


def _shapes_by_path(tree: Any) -> dict[str, tuple[int, ...]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_path_string(path): _stored_shape(leaf) for path, leaf in leaves}


def shape_differences(saved_tree: Any, target_tree: Any) -> list[str]:
    """Lines ``'params.conv.kernel: checkpoint (3, 3, 96) vs target (3, 3, 64)'``, plus leaves
    present on one side only, between a checkpoint's metadata tree and a restore target."""
    saved, target = _shapes_by_path(saved_tree), _shapes_by_path(target_tree)
    lines = []
    for key in sorted(saved.keys() | target.keys()):
        old, new = saved.get(key, _MISSING), target.get(key, _MISSING)
        if old != new:
            lines.append(f"{key}: checkpoint {old} vs target {new}")
    return lines


class Checkpointer:
    """Saves and restores a training state pytree in ``<workdir>/checkpoints`` with orbax.

    The state is any pytree of `jax.Array` (global arrays sharded over a Mesh spanning several
    processes are fine), numpy arrays and numpy scalars; typed PRNG keys are supported. With
    several processes every `jax.Array` must be a global array (e.g. a key replicated with
    ``NamedSharding(mesh, P())``, not a single-device one); numpy leaves are written by process 0
    and must be equal on all processes. Saves are asynchronous: `save` returns once the arrays
    are copied to host memory, so the caller may donate or delete them right away; the files are
    written in the background.

    On construction (unless `read_only`) the config is checked against the latest checkpoint
    (`check_compatible` over `compatible_sections`) before anything in the workdir is touched.

    Deletion keeps the `max_to_keep` newest steps, multiples of `keep_period`, and the steps
    passed to `keep` (recorded in ``<workdir>/kept_checkpoints.json``, so later runs in the
    workdir keep them too).
    """

    def __init__(
        self,
        workdir: epath.PathLike,
        *,
        config: Any = None,
        save_every: int = 1,
        max_to_keep: int | None = 3,
        keep_period: int | None = None,
        async_save: bool = True,
        read_only: bool = False,
        compatible_sections: Sequence[str] = ("model",),
    ):
        """Args:
        workdir: run directory, local or ``gs://``.
        config: the run's config (ConfigDict or mapping), stored as JSON with every checkpoint.
        save_every: `save` writes steps that are multiples of this (or when forced).
        max_to_keep: number of most recent checkpoints kept (None: all).
        keep_period: also keep every step that is a multiple of this forever.
        async_save: write in a background thread.
        read_only: for eval jobs: never writes, deletes or cleans up anything.
        compatible_sections: config sections that must match the latest checkpoint.
        """
        if save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {save_every}")
        self.workdir = absolute_path(workdir)
        self.save_every = save_every
        self._read_only = read_only
        self._config = None if config is None else config_to_json(config)
        if config is not None and not read_only:
            check_compatible(self.workdir, config, compatible_sections)
        self._kept = _KeptSteps(set(kept_steps(self.workdir)))
        policies = [ocp.checkpoint_managers.LatestN(max_to_keep), self._kept]
        if keep_period:
            policies.append(ocp.checkpoint_managers.EveryNSteps(keep_period))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=(None if read_only
                                 else ocp.checkpoint_managers.AnyPreservationPolicy(policies)),
            save_interval_steps=0 if read_only else 1,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
            enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(
            checkpoint_dir(self.workdir), options=options, item_names=(_STATE, _CONFIG)
        )
        if not read_only and jax.process_index() == 0:
            (self.workdir / FINISHED_MARKER).unlink(missing_ok=True)

    @property
    def directory(self) -> epath.Path:
        return self._manager.directory

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves `state` as `step` if `step` is a multiple of `save_every` or `force` is set.

        Every process must call this with the same arguments. A step that already has a
        checkpoint is never overwritten. Returns whether a save was started.
        """
        step = int(step)
        if not (force or step % self.save_every == 0) or step in self._manager.all_steps():
            return False
        items = {_STATE: ocp.args.StandardSave(state)}
        if self._config is not None:
            items[_CONFIG] = ocp.args.JsonSave(self._config)
        try:
            return self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        except Exception as error:   # also a failure of the previous asynchronous save
            raise self._write_error(step, error) from error

    def _write_error(self, step: int, error: BaseException) -> CheckpointWriteError:
        """The error to end the job with, once the saves still in flight have finished."""
        try:
            self._manager.wait_until_finished()
        except Exception:   # the save in flight failed too; the earlier ones are complete
            pass
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        complete = complete_steps(self.workdir)
        kept = (f"the newest complete checkpoint is {complete[-1]}" if complete
                else "no checkpoint is complete")
        return CheckpointWriteError(
            f"Writing checkpoint {step} to {self.directory} failed ({type(error).__name__}: "
            f"{reason}); {kept}, and the next start resumes from it.")

    def _refresh(self) -> None:
        # A read-only Checkpointer watches another job's directory; a writer knows its own steps.
        if self._read_only:
            self._manager.reload()

    def latest_step(self) -> int | None:
        """The newest checkpoint's step, or None. A reader (`read_only`) sees complete steps only;
        a writer also its own save in flight (complete after `wait_until_finished`)."""
        self._refresh()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of all checkpoints, ascending (as `latest_step` counts them)."""
        self._refresh()
        return sorted(self._manager.all_steps())

    def config(self, step: int | None = None) -> dict[str, Any] | None:
        """The config saved with `step` (default: the latest), or None."""
        step = self.latest_step() if step is None else step
        return None if step is None else saved_config(self.workdir, step)

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restores checkpoint `step` (default: the latest) into the structure of `abstract_state`.

        `abstract_state` is a pytree of `jax.ShapeDtypeStruct` (with the target `sharding` for
        arrays; `sharding=None` gives numpy arrays), e.g. ``jax.eval_shape(init)`` with shardings
        attached, or concrete arrays of the right shapes. Raises FileNotFoundError if there is no
        checkpoint, ValueError listing each mismatched leaf if the shapes do not match, and
        `UnreadableCheckpointError` if the checkpoint's files cannot be read.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No complete checkpoint in {self.directory}")
        args = ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract_state)})
        try:
            return self._manager.restore(step, args=args)[_STATE]
        except Exception as error:   # orbax and tensorstore raise many types
            try:
                saved = self._manager.item_metadata(step)[_STATE]
                differences = shape_differences(getattr(saved, "tree", saved), abstract_state)
            except Exception:   # unreadable metadata
                differences = []
            if not differences:
                raise UnreadableCheckpointError(step, self.directory, error) from error
            raise ValueError(
                f"Checkpoint {step} in {self.directory} does not match the restore target:\n  "
                + "\n  ".join(differences)
                + "\nThe model config probably changed; use a new --workdir."
            ) from error

    def move_aside(self, step: int) -> epath.Path:
        """Renames checkpoint `step` to ``<step>.unreadable-<time>`` (never deletes it), so that
        the newest readable one becomes the latest; returns the new path. Every process must
        call it; process 0 renames, the others wait for it."""
        source = self.directory / str(step)
        target = self.directory / f"{step}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0:
            source.rename(target)
        ocp.multihost.get_barrier_sync_fn()(key=f"checkpoint_moved_aside_{step}",
                                            timeout_ms=600_000)
        self._manager.reload()
        return target

    def keep(self, steps: Sequence[int]) -> None:
        """Never delete the checkpoints of `steps` (e.g. those before a training collapse), in
        this run or later ones. Every process must call it with the same steps."""
        self._kept.steps.update(int(step) for step in steps)
        if jax.process_index() == 0:
            (self.workdir / KEPT_FILE).write_text(json.dumps(sorted(self._kept.steps)))

    def wait_until_finished(self) -> None:
        """Blocks until the background save, if any, is committed; raises
        `CheckpointWriteError` if it failed."""
        try:
            self._manager.wait_until_finished()
        except Exception as error:
            raise self._write_error(self._manager.latest_step() or 0, error) from error

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _KeptSteps:
    """orbax preservation policy: preserve the checkpoints whose step is in ``steps``."""

    def __init__(self, steps: set[int]):
        self.steps = steps

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> list[bool]:
        del context
        return [checkpoint.step in self.steps for checkpoint in checkpoints]


def absolute_path(path: epath.PathLike) -> epath.Path:
    """``path`` made absolute if it is local (orbax refuses relative paths); ``gs://`` as is."""
    path = epath.Path(path)
    return path if "://" in str(path) or path.is_absolute() else path.absolute()


def kept_steps(workdir: epath.PathLike) -> list[int]:
    """The steps `Checkpointer.keep` recorded for `workdir` (ascending; [] if none)."""
    path = epath.Path(workdir) / KEPT_FILE
    return json.loads(path.read_text()) if path.exists() else []


def mark_training_finished(workdir: epath.PathLike) -> None:
    """Writes the 'training finished' marker (process 0 only).

    Call it after `Checkpointer.wait_until_finished`, so the final checkpoint is committed first;
    `follow_checkpoints` then yields it and stops.
    """
    if jax.process_index() == 0:
        path = epath.Path(workdir) / FINISHED_MARKER
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))


def training_finished(workdir: epath.PathLike) -> bool:
    """Whether `mark_training_finished` was called for `workdir` (and no training restarted)."""
    return (epath.Path(workdir) / FINISHED_MARKER).exists()


def follow_checkpoints(
    workdir: epath.PathLike,
    *,
    poll_seconds: float = 60.0,
    timeout_seconds: float = 3600.0,
    start_after: int | None = None,
) -> Iterator[int]:
    """Yields each complete checkpoint step of `workdir` once, in order, as training writes them.

    For a separate eval job. Starts with the existing steps after `start_after` (all if None),
    then polls every `poll_seconds`. Stops when the 'training finished' marker is present (after
    yielding the last steps) or when no new checkpoint appeared for `timeout_seconds` (the time
    spent by the caller between two yields does not count). Works on local and ``gs://`` paths.
    Steps that training deleted (max_to_keep) before the caller got to them are yielded anyway
    when they were listed; restore them promptly or keep enough of them.
    """
    last = -1 if start_after is None else start_after
    deadline = time.monotonic() + timeout_seconds
    while True:
        # Read the marker before listing: the final checkpoint is committed before the marker.
        finished = training_finished(workdir)
        new_steps = [step for step in complete_steps(workdir) if step > last]
        for step in new_steps:
            yield step
            last = step
        if finished:
            return
        if new_steps:
            deadline = time.monotonic() + timeout_seconds
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(poll_seconds, remaining))


def restored_steps(steps: Iterable[int], restore: Callable[[int], T], *,
                   skip_unreadable: bool = True) -> Iterator[tuple[int, T]]:
    """``(step, restore(step))`` for each of ``steps``, for eval jobs. A checkpoint that cannot
    be read, or that training deleted (``keep_checkpoints``) before it was read, is skipped
    with a warning (with ``skip_unreadable=False``, e.g. for a step the user named, the
    `UnreadableCheckpointError` is raised)."""
    for step in steps:
        try:
            restored = restore(step)
        except UnreadableCheckpointError as error:
            if not skip_unreadable:
                raise
            logging.warning("Skipping checkpoint %d: %s", step, error)
            continue
        yield step, restored


def steps_to_evaluate(
    workdir: epath.PathLike,
    *,
    step: int | None = None,
    latest_only: bool = False,
    poll_seconds: float = 60.0,
    timeout_seconds: float = 3600.0,
) -> Iterable[int]:
    """The checkpoint steps an eval job evaluates: `step` alone when given, else the latest
    complete one when `latest_only`, else each one as training writes it (`follow_checkpoints`).
    """
    if step is not None:
        complete = complete_steps(workdir)
        if step not in complete:
            raise FileNotFoundError(f"Checkpoint {step} in {checkpoint_dir(workdir)} does not "
                                    f"exist; complete checkpoints: {complete or 'none'}.")
        return [step]
    if latest_only:
        return complete_steps(workdir)[-1:]
    return follow_checkpoints(workdir, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds)
