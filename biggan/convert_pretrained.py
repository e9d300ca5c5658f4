r"""Convert a released BigGAN-deep generator (pytorch-pretrained-biggan's state dict) for our G.

  python -m biggan.convert_pretrained --input=<pytorch_model.bin or a directory holding it and
      config.json> --output=<dir> [--resolution=128|256|512]

Reads the file with ``torch.load(weights_only=True)`` (no pickled code runs; torch is needed
for this step only: ``pip install '.[torch]'``) and writes the directory `biggan.pretrained`
loads: the EMA weights (the release ships EMA weights only), spectral-norm vectors and the
per-truncation BN tables.

Spectral norm. PyTorch's ``spectral_norm`` in eval mode divides W [out, n] by the stored
``sigma = u . W v`` (``weight_u``, ``weight_v``); Flax's ``nn.SpectralNorm`` (DeepMind's TF
convention) stores only u and runs one power iteration from it on every call, with its
epsilon added under the square roots: ``v' = l2n(W^T u)``, ``u' = l2n(W v')``,
``sigma' = u'.W v' = |W v'|^2 / sqrt(|W v'|^2 + eps)``. For each layer we store a u whose
iteration gives the file's sigma, found in float64: start from the least-squares solution of
``W^T u = v_file`` (so v' points along the file's v, which the release computed as
``l2n(W^T u0)``), scaled so that the epsilon under the first root is negligible. The epsilon
under the second root still leaves sigma' too small by a relative ``eps / (2 sigma^2)`` (1e-4
for sigma ~ 0.7: a 3e-4 image error at 128 px), so u then moves along the power-iteration
direction (``W W^T u``), which raises |W v'|, until the sigmas agree (bisection). Files whose u
is not ``l2n(W v)`` are handled too (u is shrunk instead). When the file's power iteration has
converged (v is the top singular vector), no u can raise sigma' enough; that layer's kernel is
then stored multiplied by ``32 / sigma`` (G's function is unchanged: SN divides the scale out),
which leaves a relative error below ``eps / (2 * 32^2) = 5e-8``. pretrained.json lists the
rescaled kernels and the largest relative sigma error (~1e-8: float32 rounding).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags
from etils import epath

from biggan import pretrained
from gencore.console import stop_on_error

WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
BLOCKS_PER_RESOLUTION = {128: 10, 256: 12, 512: 14}
"""GBlocks of the released generators (two per resolution doubling from 4x4)."""
ATTENTION_POSITION = 8
"""Index of the non-local block in the release's layer list (before GBlock 8, at 64x64)."""
SIGNATURE = ("embeddings.weight", "generator.gen_z.weight_orig", "generator.bn.running_means",
             "generator.conv_to_rgb.weight_orig")
U_SCALE = 1e3
"""Norm of W^T u for the stored u: the epsilon under Flax's first square root is negligible."""
MAX_POWER_STEPS = 100
SIGMA_FLOOR = 32.0
"""Sigma of a rescaled kernel: Flax's sigma is then at most eps / (2 * 32^2) = 5e-8 too small."""

_BLOCK = re.compile(r"generator\.layers\.(\d+)\.bn_0\.running_means")
_ATTENTION = re.compile(r"generator\.layers\.(\d+)\.gamma")


def read_input(path: epath.PathLike) -> tuple[dict[str, np.ndarray], dict | None, str]:
    """(state dict as float numpy arrays, config.json or None, weights file) from
    ``pytorch_model.bin`` or a directory holding it (and usually config.json)."""
    path = epath.Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if not weights.exists():
        raise FileNotFoundError(f"No {WEIGHTS_NAME} at {path}.")
    config_file = weights.parent / CONFIG_NAME
    release_config = json.loads(config_file.read_text()) if config_file.exists() else None
    try:
        import torch
    except ImportError as error:
        raise ImportError("Converting needs PyTorch: pip install -e '.[torch]'.") from error
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{weights} is not a PyTorch state dict readable with "
                         f"weights_only=True: {error}") from error
    if not isinstance(state, Mapping) or not all(torch.is_tensor(t) for t in state.values()):
        raise ValueError(f"Expected a state dict (names -> tensors) in {weights}; found "
                         f"{type(state).__name__}.")
    arrays = {name: tensor.detach().float().numpy() for name, tensor in state.items()}
    return arrays, release_config, str(weights)


def describe(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Resolution and sizes of a pytorch-pretrained-biggan BigGAN-deep state dict."""
    missing = [name for name in SIGNATURE if name not in state]
    if missing:
        found = ", ".join(list(state)[:5]) or "nothing"
        raise ValueError(
            "Expected a pytorch-pretrained-biggan BigGAN-deep generator state dict (names "
            f"{', '.join(SIGNATURE)}, generator.layers.<i>.*); found {len(state)} tensors "
            f"named {found}{', ...' if len(state) > 5 else ''} (missing {', '.join(missing)}).")
    blocks = sorted(int(m.group(1)) for m in map(_BLOCK.fullmatch, state) if m)
    attention = sorted(int(m.group(1)) for m in map(_ATTENTION.fullmatch, state) if m)
    by_blocks = {n: r for r, n in BLOCKS_PER_RESOLUTION.items()}
    if len(blocks) not in by_blocks:
        raise ValueError(f"Expected 10, 12 or 14 GBlocks (BigGAN-deep 128, 256, 512); found "
                         f"{len(blocks)}.")
    if attention != [ATTENTION_POSITION]:
        raise ValueError(f"Expected one non-local block at layer {ATTENTION_POSITION}; found "
                         f"layers {attention}.")
    class_dim, num_classes = state["embeddings.weight"].shape
    ch = state["generator.conv_to_rgb.weight_orig"].shape[0]
    return dict(resolution=by_blocks[len(blocks)], channel_width=ch, num_classes=num_classes,
                class_embed_dim=class_dim,
                z_dim=state["generator.gen_z.weight_orig"].shape[1] - class_dim,
                n_stats=state["generator.bn.running_means"].shape[0])


def check_expected(found: Mapping[str, Any], expected_resolution: int | None,
                   release_config: Mapping[str, Any] | None) -> None:
    """Raise ValueError naming the expected and the found model when they differ."""
    if expected_resolution and expected_resolution != found["resolution"]:
        raise ValueError(
            f"Expected the BigGAN-deep {expected_resolution} generator "
            f"({BLOCKS_PER_RESOLUTION.get(expected_resolution)} GBlocks); found the "
            f"BigGAN-deep {found['resolution']} one "
            f"({BLOCKS_PER_RESOLUTION[found['resolution']]} GBlocks).")
    if release_config is not None:
        checks = dict(resolution="output_dim", channel_width="channel_width",
                      num_classes="num_classes", class_embed_dim="class_embed_dim",
                      z_dim="z_dim", n_stats="n_stats")
        for ours, theirs in checks.items():
            if theirs in release_config and release_config[theirs] != found[ours]:
                raise ValueError(f"{CONFIG_NAME} says {theirs}={release_config[theirs]}, but the "
                                 f"weights have {theirs}={found[ours]}: they come from "
                                 "different models.")
    if found["n_stats"] != pretrained.NUM_STATS:
        raise ValueError(f"Expected BN tables for {pretrained.NUM_STATS} truncation values; "
                         f"found {found['n_stats']}.")


def torch_name(path: tuple[str, ...]) -> str:
    """The state-dict name of our G variable at ``path`` ('params' or 'bn_tables' paths)."""
    head, rest = path[0], path[1:]
    if head == "shared_embedding":
        return "embeddings.weight"
    if head == "linear":
        return "generator.gen_z." + ("bias" if rest[-1] == "bias" else "weight_orig")
    if head == "bn_out":
        return "generator.bn." + {"scale": "weight", "bias": "bias", "mean": "running_means",
                                  "var": "running_vars"}[rest[-1]]
    if head == "conv_to_rgb":
        return "generator.conv_to_rgb." + ("bias" if rest[-1] == "bias" else "weight_orig")
    if head == "attention":
        prefix = f"generator.layers.{ATTENTION_POSITION}."
        return prefix + ("gamma" if rest == ("gamma",) else f"snconv1x1_{rest[0]}.weight_orig")
    block = int(head.removeprefix("block"))
    layer = block + (block >= ATTENTION_POSITION)
    module, index = rest[0][:-1], rest[0][-1]          # 'bn3' -> 'bn', '3'
    prefix = f"generator.layers.{layer}.{module}_{index}."
    if module == "conv":
        return prefix + ("bias" if rest[-1] == "bias" else "weight_orig")
    if rest[1] == "bn":
        return prefix + {"mean": "running_means", "var": "running_vars"}[rest[-1]]
    return prefix + f"{rest[1]}.weight_orig"            # scale / offset


def to_ours(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """PyTorch layout -> ours: conv [out, in, kh, kw] -> [kh, kw, in, out], linear and embedding
    [out, in] -> [in, out], a one-element vector -> the scalar ``shape == ()``."""
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if array.ndim == 2:
        return array.T
    return array.reshape(()) if shape == () and array.size == 1 else array


def flax_sigma(w: np.ndarray, u: np.ndarray, eps: float) -> float:
    """The sigma Flax's SpectralNorm computes for W [out, n] from u [out] (one power iteration,
    epsilon under the square roots), in float64."""
    a = w.T @ u
    v = a / np.sqrt(a @ a + eps)
    b = w @ v
    return float((b @ b) / np.sqrt(b @ b + eps))


def _bisect(fn, lo: float, hi: float, target: float, steps: int = 100) -> float:
    """x in [lo, hi] with fn(x) = target for fn increasing on [lo, hi]."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if fn(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def _u_for_sigma(w: np.ndarray, v_file: np.ndarray, target: float, eps: float
                 ) -> tuple[np.ndarray, bool]:
    """(u, reached): u with ``flax_sigma(w, u) == target`` if one exists, else the best found."""

    def scaled(u: np.ndarray) -> np.ndarray:
        return u * (U_SCALE / np.linalg.norm(w.T @ u))

    def sigma(u: np.ndarray) -> float:
        return flax_sigma(w, u, eps)

    start = scaled(np.linalg.lstsq(w.T, v_file, rcond=None)[0])
    if sigma(start) >= target:          # u != l2n(W v) in the file: shrink u to lower sigma
        return start * _bisect(lambda s: sigma(start * s), 0.0, 1.0, target), True
    end = start
    for _ in range(MAX_POWER_STEPS):
        previous, end = end, scaled(w @ (w.T @ end))
        if sigma(end) >= target or sigma(end) <= sigma(previous):
            break
    if sigma(end) < target:
        return end, False
    t = _bisect(lambda t: sigma((1 - t) * start + t * end), 0.0, 1.0, target)
    return (1 - t) * start + t * end, True


def spectral_u(w: np.ndarray, u_file: np.ndarray, v_file: np.ndarray, eps: float
               ) -> tuple[np.ndarray, float, float, float]:
    """(u [out] for Flax's SN, kernel scale, the file's sigma, relative sigma error) for
    W [out, n]: Flax's SN of ``scale * W`` from u equals PyTorch's eval ``W / (u_file.W v_file)``
    (see the module doc; the scale is 1 unless no u reaches the file's sigma)."""
    w, v_file = w.astype(np.float64), v_file.astype(np.float64)
    target = float(u_file.astype(np.float64) @ w @ v_file)
    if not target > 0:
        raise ValueError(f"spectral-norm vectors give sigma = {target}; expected > 0.")
    scale = 1.0
    u, reached = _u_for_sigma(w, v_file, target, eps)
    if not reached and target < SIGMA_FLOOR:
        scale = SIGMA_FLOOR / target
        u, _ = _u_for_sigma(scale * w, v_file, SIGMA_FLOOR, eps)
    u = u.astype(np.float32)
    kernel = (scale * w).astype(np.float32).astype(np.float64)
    error = abs(flax_sigma(kernel, u.astype(np.float64), eps) / (scale * target) - 1.0)
    return u, scale, target, error


def _path(entry_path: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", k)) for k in entry_path)


def convert_state_dict(state: Mapping[str, np.ndarray], expected_resolution: int | None = None,
                       release_config: Mapping[str, Any] | None = None
                       ) -> tuple[ml_collections.ConfigDict, dict, dict[str, Any]]:
    """(model config, {'params', 'spectral', 'bn_tables'} numpy trees, report) from a
    pytorch-pretrained-biggan BigGAN-deep state dict (names -> float arrays)."""
    found = describe(state)
    check_expected(found, expected_resolution, release_config)
    eps = float((release_config or {}).get("eps", 1e-4))
    cfg = pretrained.model_config(found["resolution"], g_ch=found["channel_width"],
                                  num_classes=found["num_classes"], z_dim=found["z_dim"],
                                  shared_dim=found["class_embed_dim"], bn_eps=eps, sn_eps=eps)
    abstract = pretrained.abstract_variables(cfg)
    used: set[str] = set()
    errors: list[str] = []

    def take(path: tuple[str, ...], shape: tuple[int, ...], layout: bool) -> np.ndarray:
        name = torch_name(path)
        used.add(name)
        if name not in state:
            errors.append(f"{name}: missing (for {'/'.join(path)}, shape {shape})")
            return np.zeros(shape, np.float32)
        array = to_ours(state[name], shape) if layout else state[name]
        if array.shape != shape:
            errors.append(f"{name}: found shape {state[name].shape}, expected {shape} "
                          f"(for {'/'.join(path)})")
            return np.zeros(shape, np.float32)
        return np.array(array, np.float32, order="C")

    params = jax.tree_util.tree_map_with_path(
        lambda p, s: take(_path(p), s.shape, layout=True), abstract["params"])
    tables = jax.tree_util.tree_map_with_path(
        lambda p, s: take(_path(p), s.shape, layout=False), abstract["bn_tables"])
    if errors:
        raise ValueError("The state dict does not match BigGAN-deep "
                         f"{found['resolution']}:\n  " + "\n  ".join(errors))

    worst, rescaled = 0.0, []
    spectral: dict = {}
    for entry_path, leaf in jax.tree_util.tree_flatten_with_path(abstract["spectral"])[0]:
        path = _path(entry_path)
        *module, _, variable = path                    # (..., 'SpectralNorm_0', 'conv/kernel/u')
        if not variable.endswith("/u"):
            continue
        kernel_path = (*module, *variable.split("/")[:-1])          # (..., 'conv', 'kernel')
        prefix = torch_name(kernel_path).removesuffix("weight_orig")
        w = state[prefix + "weight_orig"]
        u, scale, sigma, error = spectral_u(w.reshape(w.shape[0], -1), state[prefix + "weight_u"],
                                            state[prefix + "weight_v"], cfg.sn_eps)
        used.update({prefix + "weight_u", prefix + "weight_v"})
        worst = max(worst, error)
        node = spectral
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[variable] = u.reshape(leaf.shape)
        node[variable.removesuffix("/u") + "/sigma"] = np.asarray(scale * sigma, np.float32)
        if scale != 1.0:
            rescaled.append("/".join(kernel_path))
            parent = params
            for key in kernel_path[:-1]:
                parent = parent[key]
            parent[kernel_path[-1]] = (parent[kernel_path[-1]] * np.float32(scale))
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"The state dict has tensors BigGAN-deep {found['resolution']} does not "
                         f"use: {', '.join(unused[:10])}{', ...' if len(unused) > 10 else ''}.")
    report = dict(found, sn_max_relative_sigma_error=worst, rescaled_kernels=rescaled)
    return cfg, {"params": params, "spectral": spectral, "bn_tables": tables}, report


def convert(input_path: epath.PathLike, output_dir: epath.PathLike,
            expected_resolution: int | None = None) -> dict[str, Any]:
    """Read ``input_path``, convert and write ``output_dir``; returns the report."""
    state, release_config, weights = read_input(input_path)
    cfg, variables, report = convert_state_dict(state, expected_resolution, release_config)
    pretrained.save(output_dir, cfg, variables, dict(report, file=weights))
    return report


def main(argv: list[str]) -> None:
    del argv
    flag = flags.FLAGS
    report = convert(flag.input, flag.output, int(flag.resolution) if flag.resolution else None)
    summary = dict(report, rescaled_kernels=len(report["rescaled_kernels"]),
                   output=str(epath.Path(flag.output).absolute()))
    print(json.dumps(summary))


if __name__ == "__main__":
    flags.DEFINE_string("input", None, f"{WEIGHTS_NAME}, or a directory holding it and "
                        f"{CONFIG_NAME}.")
    flags.DEFINE_string("output", None, "Directory to write (must not hold a conversion).")
    flags.DEFINE_enum("resolution", None, ["128", "256", "512"],
                      "Fail unless the file holds this resolution's generator.")
    flags.mark_flags_as_required(["input", "output"])
    app.run(stop_on_error("convert_pretrained", main))
