"""Converts pytorch-fid's Inception weights to the Flax network of `gencore.inception`.

    python -m gencore.convert_inception --input=pt_inception-2015-12-05-6726825d.pth \
        --output=inception_fid.npz

The input is pytorch-fid's state dict (read with torch.load(weights_only=True); torch is imported
only for this) or an .npz holding the same name -> array mapping. Names map one-to-one:
`<module>.conv.weight` (out, in, kh, kw) -> `params/<module>/conv/kernel` (kh, kw, in, out),
`<module>.bn.{weight,bias}` -> `params/<module>/bn/{scale,bias}`,
`<module>.bn.running_{mean,var}` -> `batch_stats/<module>/bn/{mean,var}`,
`fc.weight` (1008, 2048) -> `params/fc/kernel` (2048, 1008), `fc.bias` -> `params/fc/bias`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags
from flax import traverse_util

from gencore import inception
from gencore.console import stop_on_error

_BN_NAMES = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}


def _flax_key(torch_name: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
    """One state-dict entry -> (flat Flax key, array in Flax layout); None for skipped buffers."""
    *modules, layer, leaf = torch_name.split(".")
    if leaf == "num_batches_tracked":
        return None
    if layer == "bn" and leaf in _BN_NAMES:
        collection, name = _BN_NAMES[leaf]
        return "/".join([collection, *modules, "bn", name]), value
    if layer == "conv" and leaf == "weight" and value.ndim == 4:
        return "/".join(["params", *modules, "conv", "kernel"]), value.transpose(2, 3, 1, 0)
    if not modules and layer == "fc" and leaf == "weight" and value.ndim == 2:
        return "params/fc/kernel", value.T
    if not modules and layer == "fc" and leaf == "bias":
        return "params/fc/bias", value
    raise ValueError(f"Unexpected entry in the Inception state dict: {torch_name} {value.shape}")


def state_dict_to_flat_variables(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """pytorch-fid state dict (name -> array) -> flat Flax variables, checked against the net."""
    flat = {}
    for name, value in state_dict.items():
        converted = _flax_key(name, np.asarray(value, dtype=np.float32))
        if converted is not None:
            flat[converted[0]] = np.ascontiguousarray(converted[1])
    inception.check_variables(flat)
    return flat


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a name -> array mapping from a PyTorch .pth (needs torch) or an .npz file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--input={path} does not exist: pass pytorch-fid's "
                                f"{inception.PTH_NAME} (or an .npz of it).")
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "Reading a .pth file needs PyTorch: pip install -e '.[torch]', or pass an .npz with "
            "the same name -> array mapping."
        ) from e
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().cpu().numpy() for k, v in state_dict.items()}


def convert(input_path: str | os.PathLike, output_path: str | os.PathLike) -> Path:
    """Reads pytorch-fid's weights from `input_path` and writes the Flax .npz to `output_path`."""
    flat = state_dict_to_flat_variables(read_state_dict(input_path))
    output_path = Path(output_path)
    inception.save_variables(traverse_util.unflatten_dict(flat, sep="/"), output_path)
    return output_path


def main(argv: list[str]) -> None:
    del argv
    out = convert(flags.FLAGS.input, flags.FLAGS.output)
    print(f"Wrote {out}. Set config.eval.inception_weights or ${inception.WEIGHTS_ENV_VAR} to it.")


if __name__ == "__main__":
    flags.DEFINE_string("input", None, f"pytorch-fid's {inception.PTH_NAME} (or an .npz).")
    flags.DEFINE_string("output", None, "Where to write the Flax weights (.npz).")
    flags.mark_flags_as_required(["input", "output"])
    app.run(stop_on_error("convert_inception", main))
