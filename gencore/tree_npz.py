"""Small pytrees of arrays (network weights, feature statistics) stored as one .npz file.

Keys are the '/'-joined paths of the nested dicts ('params/fc/kernel'); `metadata` (a JSON-able
dict) is stored alongside under the reserved key '__metadata__'.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import traverse_util

_METADATA_KEY = "__metadata__"


class DamagedFileError(ValueError):
    """A weights or statistics file exists but cannot be read (truncated, not an .npz, ...)."""


def save_tree(
    tree: Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Writes a nested dict of arrays (and optional metadata) to `path` atomically."""
    flat = traverse_util.flatten_dict(jax.device_get(dict(tree)), sep="/")
    arrays = {k: np.asarray(v) for k, v in flat.items()}
    arrays[_METADATA_KEY] = np.asarray(json.dumps(dict(metadata or {})))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def load_flat(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads `save_tree`'s file as (flat 'a/b/c' -> array dict, metadata). Raises
    FileNotFoundError if it is missing, `DamagedFileError` naming it if it cannot be read."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as data:
            flat = {k: data[k] for k in data.files if k != _METADATA_KEY}
            metadata = (json.loads(str(data[_METADATA_KEY])) if _METADATA_KEY in data.files
                        else {})
    except Exception as error:   # zipfile, zlib, numpy and json errors alike
        raise DamagedFileError(
            f"{path} is damaged: it cannot be read as an .npz of arrays "
            f"({type(error).__name__}: {error}). Write it again (or delete it if it is a cache)."
        ) from error
    return flat, metadata


def load_tree(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads `save_tree`'s file as (nested dict of arrays, metadata)."""
    flat, metadata = load_flat(path)
    return traverse_util.unflatten_dict(flat, sep="/"), metadata
