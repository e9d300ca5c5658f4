"""Will this config fit its Cloud TPU? Compile the real steps for a TPU topology on this CPU host.

    python -m launch.compile_check --config=configs/biggan/imagenet128.py:row8 \
        --topology=v3-128 [--batch=2048] [--config.train.grad_accum=2] [--json]

libtpu (the ``tpu`` extra) compiles for compile-only TPU devices
(``jax.experimental.topologies``); no TPU is needed. The train step (``make_train_step`` of the
config's model, the global batch split over every core) and the eval job's sampling step (one
EMA generator / denoiser forward at ``config.eval.batch_size``, rounded up to a multiple of the
core count) are lowered from abstract inputs and compiled. Printed per core: XLA's memory
analysis (arguments, outputs, temporaries, generated code; donated state counted once) against
the core's HBM, XLA's FLOPs per step, and the step time those FLOPs take at the chip's peak.

Exit status: 0 fits, 1 does not fit (with the largest per-core batch that fits, found by
compiling smaller batches, and the settings that would run the paper's batch), 2 usage errors
or libtpu missing.

Peak and HBM figures (per chip, Google Cloud TPU documentation): v2 45 TFLOP/s, 16 GiB over
2 cores; v3 123 TFLOP/s, 32 GiB over 2 cores (XLA reports 15.48 GiB usable per core); v4 275
TFLOP/s, 32 GiB; v5e 197 TFLOP/s, 16 GiB; v5p 459 TFLOP/s, 95 GiB; v6e 918 TFLOP/s, 32 GiB. v4
and v5p run both TensorCores of a chip as one device (megacore). Peaks are bf16 matmul rates:
float32 matmuls on TPU run as bf16 passes (default precision), so the peak-time figure is a
lower bound for either dtype.
"""

import dataclasses
import importlib.util
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import ml_collections

GIB = 2**30
INSTALL_HINT = ("launch.compile_check needs libtpu to compile for TPU on this host: "
                "pip install -e '.[tpu]'  (or pip install 'jax[tpu]' matching the installed jax).")


@dataclasses.dataclass(frozen=True)
class Chip:
    """One TPU generation: cores per chip, how a name's number counts, per-device figures."""

    cores_per_chip: int        # TensorCores per chip
    devices_per_chip: int      # JAX devices per chip (1 with megacore)
    name_counts_cores: bool    # 'v3-128' counts TensorCores; 'v5e-16' counts chips
    hbm_per_device: float      # bytes XLA may use per JAX device
    peak_per_device: float     # bf16 FLOP/s per JAX device
    shapes: dict[int, str]     # chips -> topology shape
    chip_config: str = "default"


_2D = {4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16",
       512: "16x32", 1024: "32x32"}
_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
       256: "4x8x8", 512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16"}
CHIPS = {
    "v2": Chip(2, 2, True, 8 * GIB, 45e12 / 2, {c: _2D[c] for c in (4, 16, 64, 128, 256)}),
    "v3": Chip(2, 2, True, 15.48 * GIB, 123e12 / 2,
               {c: _2D[c] for c in (4, 16, 32, 64, 128, 256, 512, 1024)}),
    "v4": Chip(2, 1, True, 32 * GIB, 275e12, _3D, "megacore"),
    "v5e": Chip(1, 1, False, 16 * GIB, 197e12, {c: _2D[c] for c in (4, 8, 16, 32, 64, 128, 256)}),
    "v5p": Chip(2, 1, True, 95 * GIB, 459e12, _3D, "megacore"),
    "v6e": Chip(1, 1, False, 32 * GIB, 918e12, {c: _2D[c] for c in (4, 8, 16, 32, 64, 128, 256)}),
}
ALIASES = {"v5litepod": "v5e"}


def topology_names() -> list[str]:
    """Every accepted accelerator name, e.g. 'v3-128', 'v4-32', 'v5e-16'."""
    names = []
    for family, chip in CHIPS.items():
        per_name = chip.cores_per_chip if chip.name_counts_cores else 1
        names += [f"{family}-{chips * per_name}" for chips in chip.shapes]
    return names


@dataclasses.dataclass(frozen=True)
class Topology:
    name: str          # accelerator type, 'v3-128'
    family: str        # 'v3'
    topology: str      # get_topology_desc's name, 'v3:8x8'
    chip: Chip

    @property
    def num_devices(self) -> int:
        chips = math.prod(int(s) for s in self.topology.split(":")[1].split("x"))
        return chips * self.chip.devices_per_chip


def parse_topology(name: str) -> Topology:
    """'v3-128' (accelerator type) or 'v3:8x8' (topology name) -> Topology; ValueError listing
    the valid names otherwise."""
    match = re.fullmatch(r"(v\d+[a-z]*|v5litepod)([-:])([\dx]+)", name.strip().lower())
    family = ALIASES.get(match.group(1), match.group(1)) if match else None
    if family in CHIPS:
        chip, sep, size = CHIPS[family], match.group(2), match.group(3)
        if sep == ":" and size in chip.shapes.values():
            return Topology(name, family, f"{family}:{size}", chip)
        if sep == "-" and size.isdigit():
            per_name = chip.cores_per_chip if chip.name_counts_cores else 1
            chips, rest = divmod(int(size), per_name)
            if not rest and chips in chip.shapes:
                return Topology(name, family, f"{family}:{chip.shapes[chips]}", chip)
    raise ValueError(f"Unknown TPU topology {name!r}; valid: {', '.join(topology_names())} "
                     f"(or a topology name such as v3:8x8).")


def tpu_devices(topology: Topology) -> list:
    """Compile-only TPU devices of ``topology`` (needs libtpu)."""
    from jax.experimental import topologies
    desc = topologies.get_topology_desc(
        platform="tpu", topology_name=topology.topology, chip_config_name=topology.chip.chip_config,
        chips_per_host_bounds=(2, 2, 1), num_slices=1)
    return list(desc.devices)


def model_kind(config: ml_collections.ConfigDict) -> str:
    """'diffusion' for configs with a ``diffusion`` section, else 'biggan'."""
    return "diffusion" if "diffusion" in config else "biggan"


def _with_sharding(tree: Any, sharding: Any) -> Any:
    import jax
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def abstract_programs(config: ml_collections.ConfigDict, mesh: Any, eval_batch: int
                      ) -> tuple[dict[str, tuple[Callable, tuple]], int]:
    """{'train': (jitted train step, abstract args), 'sample': (...)} and the parameter count.

    Arguments are ShapeDtypeStructs carrying the shardings the training job uses: replicated
    state, the batch split over every device."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding

    from gencore.sharding import batch_sharded, replicated
    rep, split = replicated(mesh), batch_sharded(mesh)
    train, res = config.train, config.model.resolution
    z_eval = jax.ShapeDtypeStruct((eval_batch,), jnp.int32, sharding=split)
    if model_kind(config) == "biggan":
        from biggan import model as biggan_model
        from biggan import train_step as ts
        state = _with_sharding(jax.eval_shape(lambda: ts.create_train_state(config, mesh)), rep)
        lead = (train.num_d_steps, train.grad_accum, train.batch_size // train.grad_accum)
        upd = NamedSharding(mesh, ts.UPDATE_SPEC)
        batch = {"image": jax.ShapeDtypeStruct((*lead, res, res, 3), jnp.float32, sharding=upd),
                 "label": jax.ShapeDtypeStruct(lead, jnp.int32, sharding=upd)}
        z = jax.ShapeDtypeStruct((eval_batch, config.model.z_dim), jnp.float32, sharding=split)
        sample = (ts.generate_ema(config), (state.ema_params, state.g_state, z, z_eval))
        params = (biggan_model.count_params(state.g_params)
                  + biggan_model.count_params(state.d_params))
    else:
        from biggan.model import count_params
        from diffusion import model as diffusion_model
        from diffusion import train_step as dtrain
        state = _with_sharding(jax.eval_shape(lambda: dtrain.create_train_state(config, mesh)),
                               rep)
        batch = {"image": jax.ShapeDtypeStruct((train.batch_size, res, res, 3), jnp.float32,
                                               sharding=split),
                 "label": jax.ShapeDtypeStruct((train.batch_size,), jnp.int32, sharding=split)}
        unet = diffusion_model.build_unet(config)
        x = jax.ShapeDtypeStruct((eval_batch, res, res, 3), jnp.float32, sharding=split)
        t = jax.ShapeDtypeStruct((eval_batch,), jnp.float32, sharding=split)
        y = z_eval if config.model.num_classes else None
        denoise = jax.jit(lambda p, x, t, y: unet.apply({"params": p}, x, t, y))
        sample = (denoise, (state.ema_params, x, t, y))
        params = count_params(state.params)
    step = (dtrain.make_train_step(config, mesh) if model_kind(config) == "diffusion"
            else ts.make_train_step(config, mesh))
    return {"train": (step, (state, batch)), "sample": sample}, params


OOM = re.compile(r"(Ran out of memory|RESOURCE_EXHAUSTED|exceeds available HBM)", re.I)


def compile_figures(fn: Callable, args: tuple, hbm: float) -> dict[str, Any]:
    """Compile ``fn`` for ``args``; per-device bytes, FLOPs and compile time. A program XLA
    rejects for memory gives fits=False and the compiler's message."""
    start = time.perf_counter()
    try:
        compiled = fn.lower(*args).compile()
    except Exception as error:   # XlaRuntimeError is not exported under a stable name
        if not OOM.search(str(error)):
            raise
        return dict(fits=False, compile_s=round(time.perf_counter() - start, 1),
                    compiler_error=str(error).strip().splitlines()[0][:400])
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    figures = dict(argument_bytes=mem.argument_size_in_bytes, output_bytes=mem.output_size_in_bytes,
                   alias_bytes=mem.alias_size_in_bytes, temp_bytes=mem.temp_size_in_bytes,
                   code_bytes=mem.generated_code_size_in_bytes)
    total = (figures["argument_bytes"] + figures["output_bytes"] - figures["alias_bytes"]
             + figures["temp_bytes"] + figures["code_bytes"])
    return dict(figures, total_bytes=total, fits=total <= hbm, flops=float(cost.get("flops", 0.0)),
                compile_s=round(time.perf_counter() - start, 1))


def with_batch(config: ml_collections.ConfigDict, batch: int) -> ml_collections.ConfigDict:
    """A copy of ``config`` at global batch ``batch``."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.train.batch_size = batch
    return config


def check(config: ml_collections.ConfigDict, topology: Topology, *, search: int = 4
          ) -> dict[str, Any]:
    """All figures for ``config`` on ``topology``; when the train step does not fit, compiles
    up to ``search`` smaller batches (halving the per-core micro-batch) to find one that does."""
    from gencore.sharding import make_mesh
    devices = tpu_devices(topology)
    n = len(devices)
    mesh = make_mesh(devices=devices, bn_group_size=config.model.get("bn_group_size", 0))
    eval_batch = -(-config.eval.batch_size // n) * n
    programs, params = abstract_programs(config, mesh, eval_batch)
    hbm, peak = topology.chip.hbm_per_device, topology.chip.peak_per_device
    train = compile_figures(*programs["train"], hbm)
    sample = compile_figures(*programs["sample"], hbm)
    accum = config.train.get("grad_accum", 1)
    report = dict(
        topology=topology.name, topology_name=topology.topology, devices=n,
        model=config.model.name, dtype=config.model.get("dtype", "float32"), params=params,
        batch_size=config.train.batch_size, grad_accum=accum,
        micro_batch_per_device=config.train.batch_size // accum // n,
        hbm_per_device_bytes=int(hbm), peak_flops_per_device=peak, train=train,
        sample=dict(sample, batch_size=eval_batch))
    if "flops" in train:
        # Per-device program: XLA's FLOPs are those of one core's shard of the step.
        report["flops_per_step"] = train["flops"] * n
        report["flops_per_image"] = train["flops"] * n / config.train.batch_size
        report["step_s_at_peak"] = train["flops"] / peak
    if not train["fits"]:
        report["suggestion"] = suggest(config, topology, mesh, search)
    return report


def suggest(config: ml_collections.ConfigDict, topology: Topology, mesh: Any, search: int
            ) -> dict[str, Any]:
    """Largest per-core micro-batch that fits among halvings of the current one, and the
    gradient accumulation that keeps the paper's global batch with it."""
    n = mesh.devices.size
    accum = config.train.get("grad_accum", 1)
    micro = config.train.batch_size // accum // n
    for _ in range(search):
        micro //= 2
        if micro < 1:
            break
        trial = with_batch(config, micro * n * accum)
        programs, _ = abstract_programs(trial, mesh, n)
        figures = compile_figures(*programs["train"], topology.chip.hbm_per_device)
        if figures["fits"]:
            factor = config.train.batch_size // (micro * n)
            return dict(micro_batch_per_device=micro, fitting_total_bytes=figures["total_bytes"],
                        grad_accum=factor,
                        text=f"fits at {micro} images per core per micro-batch: keep "
                             f"batch_size={config.train.batch_size} with "
                             f"--config.train.grad_accum={factor}, or use "
                             f"--batch={micro * n * accum}; --config.model.dtype=bfloat16 "
                             f"also reduces activations.")
    return dict(text=f"no per-core batch down to {max(micro, 1)} fits: try "
                     f"--config.model.dtype=bfloat16 or a larger topology.")


def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines of ``check``'s figures."""
    hbm = report["hbm_per_device_bytes"] / GIB
    lines = [f"{report['model']} ({report['params'] / 1e6:.1f}M params, {report['dtype']}) on "
             f"{report['topology']} ({report['topology_name']}, {report['devices']} devices): "
             f"batch {report['batch_size']} = {report['grad_accum']} x "
             f"{report['micro_batch_per_device']} per device"]
    for name in ("train", "sample"):
        f = report[name]
        if "total_bytes" not in f:
            lines.append(f"  {name}: does NOT fit: {f['compiler_error']} "
                         f"(compile {f['compile_s']} s)")
            continue
        lines.append(
            f"  {name}: per device arguments {f['argument_bytes'] / GIB:.2f} GiB, outputs "
            f"{f['output_bytes'] / GIB:.2f} (aliased {f['alias_bytes'] / GIB:.2f}), temporaries "
            f"{f['temp_bytes'] / GIB:.2f}, code {f['code_bytes'] / GIB:.3f}; total "
            f"{f['total_bytes'] / GIB:.2f} of {hbm:.2f} GiB -> "
            f"{'fits' if f['fits'] else 'does NOT fit'} (compile {f['compile_s']} s)")
    if "flops_per_step" in report:
        lines.append(f"  train step: {report['flops_per_step']:.3e} FLOPs "
                     f"({report['flops_per_image']:.3e} per image of the batch); "
                     f"{report['step_s_at_peak'] * 1e3:.1f} ms at "
                     f"{report['peak_flops_per_device'] / 1e12:.1f} TFLOP/s per device peak")
    if "suggestion" in report:
        lines.append(f"  suggestion: {report['suggestion']['text']}")
    return "\n".join(lines)


def prepare_environment() -> None:
    """Env vars libtpu needs to compile without a TPU; must run before jax is imported."""
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def libtpu_available() -> bool:
    return importlib.util.find_spec("libtpu") is not None


def main(argv: list[str] | None = None) -> int:
    """Command line; returns the exit status (0 fits, 1 does not fit, 2 usage / no libtpu)."""
    prepare_environment()
    from absl import flags
    from ml_collections import config_flags
    fv = flags.FlagValues()
    config_flag = config_flags.DEFINE_config_file("config", None, "file.py[:variant]",
                                                  flag_values=fv, lock_config=False)
    topology_flag = flags.DEFINE_string("topology", "v3-128", "Accelerator type, e.g. v3-128.",
                                        flag_values=fv)
    batch_flag = flags.DEFINE_integer("batch", None, "Global batch (config.train.batch_size).",
                                      flag_values=fv)
    json_flag = flags.DEFINE_bool("json", False, "Print one JSON line.", flag_values=fv)
    try:
        fv(argv if argv is not None else sys.argv)
        topology = parse_topology(topology_flag.value)
        if config_flag.value is None:
            raise ValueError("--config=file.py[:variant] is required.")
    except (flags.Error, ValueError) as error:
        print(f"compile_check: {error}", file=sys.stderr)
        return 2
    if not libtpu_available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    config = config_flag.value
    if batch_flag.value is not None:
        config.train.batch_size = batch_flag.value
    try:
        report = check(config, topology)
    except ValueError as error:   # config validation (batch not divisible, ...)
        print(f"compile_check: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report) if json_flag.value else format_report(report))
    if not report["train"]["fits"]:
        print(f"compile_check: the train step does not fit {topology.name}: "
              f"{report['suggestion']['text']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
