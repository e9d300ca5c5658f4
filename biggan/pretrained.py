"""DeepMind's released BigGAN-deep generators in our Flax G, with the release's BN statistics.

The release (TF-Hub modules, and the ``pytorch_model.bin`` files of pytorch-pretrained-biggan)
stores no running BatchNorm statistics. Instead every BN layer holds a table of means and
variances for 51 truncation values 0, 0.02, ..., 1; at sampling time the statistics for the
requested truncation are read from the tables ("released statistics" mode, an alternative to
standing statistics, Appendix C.1). `biggan.convert_pretrained` writes a directory that this
module reads::

    <dir>/pretrained.json   format, resolution, the model config, truncation grid, provenance
    <dir>/variables/        orbax checkpoint {'params', 'spectral', 'bn_tables'}

'params' and 'spectral' are the variable collections of ``build_generator(config.model)``;
'bn_tables' mirrors its 'batch_stats' with a leading axis of 51 on every 'mean' and 'var'.

The release counts truncation its own way: truncation s draws z as s times N(0, I) truncated to
[-2, 2] (``draw_z``), and its tables were accumulated on that z. The paper's threshold (the
training code's, ``biggan.latents``) redraws entries above s instead; the two agree only at
release truncation 1.0 = threshold 2.0.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from biggan import layers
from biggan import model as biggan_model
from biggan.latents import truncated_normal_by_resampling

FORMAT = "biggan-deep-pretrained/1"
METADATA_FILE = "pretrained.json"
VARIABLES_DIR = "variables"
NUM_STATS = 51
"""Truncation values with stored BN statistics: 0, 0.02, ..., 1 (the release's n_stats)."""
RESOLUTIONS = (128, 256, 512)
Z_BOUND = 2.0   # the release's z: N(0, I) truncated to [-Z_BOUND, Z_BOUND], times the truncation


def model_config(resolution: int, **overrides: Any) -> ml_collections.ConfigDict:
    """``configs/biggan/imagenet{resolution}.py:deep``'s model section with ``overrides``
    (g_ch, z_dim, ...: the release uses the defaults; smaller widths serve tests)."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"BigGAN-deep was released at {RESOLUTIONS} pixels, not {resolution}.")
    cfg = importlib.import_module(f"configs.biggan.imagenet{resolution}").get_config("deep").model
    cfg.update(overrides)
    return cfg


def truncation_weights(truncation: float, num_stats: int = NUM_STATS
                       ) -> tuple[tuple[int, float], ...]:
    """(table index, weight) pairs whose weighted sum gives the BN statistics at ``truncation``.

    Reproduces pytorch-pretrained-biggan's ``BigGANBatchNorm`` exactly, quirks included:
    ``coef, start = modf(truncation / (1 / (num_stats - 1)))`` in float64, then
    ``table[start] * coef + table[start + 1] * (1 - coef)``: the weights are swapped with respect
    to linear interpolation (0.405 gives 0.25 * table[20] + 0.75 * table[21]), and float64
    rounding moves five grid values onto a neighbouring table: 0.14 / 0.02 = 7.000000000000001,
    so 0.14 reads table[8] (the 0.16 statistics) with weight 1 - 9e-16, as do 0.28 and 0.56
    (the next table); 0.58 and 0.94 read the previous one (0.56, 0.92). Other grid values divide
    exactly (0.4 / 0.02 = 20.0) and read their own table alone.
    """
    if not 0.0 < truncation <= 1.0:
        raise ValueError(f"truncation={truncation} is outside (0, 1]: the release stores BN "
                         f"statistics for truncation values 0 to 1 only.")
    coef, start = math.modf(truncation / (1.0 / (num_stats - 1)))
    start = int(start)
    if coef == 0.0:
        return ((start, 1.0),)
    return (start, coef), (start + 1, 1.0 - coef)


def draw_z(key: jax.Array, shape: tuple[int, ...], truncation: float) -> jax.Array:
    """z of ``shape`` [..., z_dim] as the release samples it at ``truncation`` s in (0, 1]:
    s * N(0, 1) truncated to [-2, 2] (pytorch-pretrained-biggan's ``truncated_noise_sample``,
    the TF-Hub examples), so |z| <= 2 s."""
    truncation_weights(truncation)                     # (0, 1], as the BN tables
    return truncation * truncated_normal_by_resampling(key, shape, Z_BOUND)


def interpolate_table(table: np.ndarray, truncation: float) -> np.ndarray:
    """Statistics [C] from a table [num_stats, C] at ``truncation``, in float32 as the release
    computes them (each weight rounded to float32, products and sum in float32)."""
    table = np.asarray(table, np.float32)
    weights = truncation_weights(truncation, table.shape[0])
    if len(weights) == 1:
        return table[weights[0][0]]
    (i, wi), (j, wj) = weights
    return table[i] * np.float32(wi) + table[j] * np.float32(wj)


def batch_stats_for_truncation(bn_tables: Mapping[str, Any], truncation: float) -> dict:
    """'batch_stats' (``{'mean': [C], 'var': [C]}`` leaves) of G at ``truncation`` from the
    per-truncation tables (same tree, leaves [num_stats, C])."""
    return jax.tree.map(lambda t: interpolate_table(t, truncation), dict(bn_tables))


def save(directory: epath.PathLike, cfg: ml_collections.ConfigDict, variables: Mapping[str, Any],
         info: Mapping[str, Any]) -> epath.Path:
    """Write ``variables`` ({'params', 'spectral', 'bn_tables'} of numpy arrays) for the G of
    ``cfg`` (a model config) plus ``pretrained.json`` (``info`` added under 'source')."""
    directory = epath.Path(directory).absolute()
    if (directory / VARIABLES_DIR).exists():
        raise FileExistsError(f"{directory / VARIABLES_DIR} exists; choose an empty --output.")
    directory.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
    checkpointer.save(directory / VARIABLES_DIR, args=ocp.args.StandardSave(dict(variables)))
    metadata = dict(format=FORMAT, resolution=cfg.resolution, model=cfg.to_dict(),
                    truncation_grid=dict(start=0.0, stop=1.0, num=NUM_STATS), source=dict(info))
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return directory


def abstract_variables(cfg: ml_collections.ConfigDict) -> dict:
    """ShapeDtypeStructs of {'params', 'spectral', 'bn_tables'} for the G of ``cfg``."""
    z, y, _ = biggan_model.example_inputs(cfg, batch=1)
    shapes = jax.eval_shape(
        lambda: biggan_model.build_generator(cfg).init(jax.random.key(0), z, y, train=False))
    tables = jax.tree.map(lambda s: jax.ShapeDtypeStruct((NUM_STATS, *s.shape), s.dtype),
                          shapes["batch_stats"])
    return {"params": shapes["params"], "spectral": shapes["spectral"], "bn_tables": tables}


def read_metadata(directory: epath.PathLike) -> dict:
    """``pretrained.json`` of a converted directory, with a clear error for anything else."""
    path = epath.Path(directory) / METADATA_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{directory} is not a converted BigGAN-deep directory (no {METADATA_FILE}); "
            "create one with python -m biggan.convert_pretrained --input=... --output=...")
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is damaged: not valid JSON ({error}). Convert the release "
                         "again with python -m biggan.convert_pretrained.") from error
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}.")
    return metadata


@functools.lru_cache(maxsize=4)
def _compiled_apply(cfg_json: str):
    """G's eval-mode apply on weights already divided by their stored sigma (no power
    iteration per call), jitted once per model config (shared by every loaded copy)."""
    model = biggan_model.build_generator(ml_collections.ConfigDict(json.loads(cfg_json)))

    def apply(variables: dict, z: jax.Array, y: jax.Array) -> jax.Array:
        with layers.spectral_norm_skipped():
            return model.apply(variables, z, y, train=False)

    return jax.jit(apply)


@dataclasses.dataclass
class PretrainedGenerator:
    """A released BigGAN-deep G with its per-truncation BN tables; call it to sample."""

    cfg: ml_collections.ConfigDict
    params: dict
    spectral: dict
    bn_tables: dict
    normalized_params: dict = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Weights go to the device once; only the small BN statistics travel per call. The
        # release's spectral norm divides by the stored sigma, so that division is done once.
        self.params, self.spectral = jax.device_put((self.params, self.spectral))
        self.normalized_params = jax.jit(layers.divide_by_stored_sigma)(self.params,
                                                                        self.spectral)

    @property
    def resolution(self) -> int:
        return self.cfg.resolution

    def variables(self, truncation: float) -> dict:
        """G's sampling variables: spectrally normalized weights and 'batch_stats' read from
        the tables at ``truncation``."""
        return {"params": self.normalized_params,
                "batch_stats": batch_stats_for_truncation(self.bn_tables, truncation)}

    def __call__(self, z: np.ndarray, labels: np.ndarray, truncation: float) -> np.ndarray:
        """Images [B, R, R, 3] float32 in [-1, 1] from z [B, z_dim] and int labels [B].

        ``truncation`` selects the BN statistics; z is used as given (sample it truncated, e.g.
        with `biggan.latents.truncated_normal_by_resampling`, with the same value).
        """
        z = np.asarray(z, np.float32)
        labels = np.asarray(labels)
        if z.ndim != 2 or z.shape[1] != self.cfg.z_dim:
            raise ValueError(f"z has shape {z.shape}; expected [batch, {self.cfg.z_dim}].")
        if labels.shape != (z.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {z.shape[0]} integers (one per z row); got "
                             f"{labels.dtype} {labels.shape}.")
        if labels.size and not 0 <= labels.min() <= labels.max() < self.cfg.num_classes:
            raise ValueError(f"labels must be class indices in [0, {self.cfg.num_classes}); "
                             f"got {labels.min()}..{labels.max()}.")
        apply = _compiled_apply(self.cfg.to_json())
        images = apply(self.variables(truncation), z, labels.astype(np.int32))
        return np.asarray(images)


def load(directory: epath.PathLike) -> PretrainedGenerator:
    """Read a directory written by `biggan.convert_pretrained`."""
    directory = epath.Path(directory).absolute()
    metadata = read_metadata(directory)
    cfg = ml_collections.ConfigDict(metadata["model"])
    target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_variables(cfg))
    checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
    try:
        restored = checkpointer.restore(directory / VARIABLES_DIR,
                                        args=ocp.args.StandardRestore(target))
    except Exception as error:   # orbax and tensorstore raise many types
        reason = " ".join(str(error).split())[:300]
        raise ValueError(
            f"{directory / VARIABLES_DIR} is damaged: its weights cannot be read "
            f"({type(error).__name__}: {reason}). Convert the release again with python -m "
            "biggan.convert_pretrained.") from error
    return PretrainedGenerator(cfg, restored["params"], restored["spectral"],
                               restored["bn_tables"])


def sample(pretrained_dir: epath.PathLike, z: np.ndarray, labels: np.ndarray,
           truncation: float) -> np.ndarray:
    """Images [B, R, R, 3] in [-1, 1] from the converted release in ``pretrained_dir``."""
    return load(pretrained_dir)(z, labels, truncation)
