"""Device mesh and batch placement for data-parallel steps written with ``jax.shard_map``.

The mesh has two axes that together split the batch: ``BN_AXIS`` groups the devices whose
BatchNorm statistics are reduced together (cross-replica BN when it spans every device,
per-device BN when its size is 1), and ``GROUP_AXIS`` enumerates those groups. Parameters are
replicated. Every cross-device reduction inside a step is an explicit ``lax.pmean``/``psum``
over ``DATA_AXES`` (both axes) or, for BN statistics, over ``BN_AXIS``.
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

GROUP_AXIS = "data"
BN_AXIS = "bn"
DATA_AXES = (GROUP_AXIS, BN_AXIS)


def make_mesh(devices: Sequence[jax.Device] | None = None, bn_group_size: int = 0) -> Mesh:
    """A data-parallel mesh over ``devices`` (default: all devices of all processes).

    bn_group_size: devices per BatchNorm group; 0 means one group of all devices.
    """
    devices = jax.devices() if devices is None else list(devices)
    n = len(devices)
    group = bn_group_size or n
    if group < 1 or n % group:
        raise ValueError(f"config.model.bn_group_size={bn_group_size} must divide the device "
                         f"count ({n}); 0 means statistics over all devices.")
    return Mesh(np.asarray(devices).reshape(n // group, group), DATA_AXES)


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of parameters and other replicated state."""
    return NamedSharding(mesh, PartitionSpec())


BATCH_SPEC = PartitionSpec(DATA_AXES)
"""PartitionSpec of arrays whose leading (batch) axis is split over every device."""


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding of arrays whose leading (batch) axis is split over every device."""
    return NamedSharding(mesh, BATCH_SPEC)


def check_batch_divisible(batch_size: int, num_devices: int, field: str) -> None:
    """Fail with the config field's name when a global batch does not split over the devices."""
    n = num_devices
    if batch_size % n:
        raise ValueError(f"{field}={batch_size} is not divisible by the number of devices ({n}); "
                         f"use a multiple of {n}.")


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble each process's slice of the batch into global arrays split over every device.

    local_batch arrays are [B_local, ...]; results are [B_local * process_count, ...].
    """
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def first_process_array(x: jax.Array) -> np.ndarray:
    """The host copy of a replicated global array (readable on any process)."""
    return np.asarray(x.addressable_data(0))
