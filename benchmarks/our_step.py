r"""Our side of `side_by_side.py`, and a train-step benchmark of its own.

  python benchmarks/our_step.py --setting=ddpm_cifar10 [--batch=B] [--width=W] \
      [--precision=default|highest|bf16] [--steps=5]        # one JSON line
  python benchmarks/our_step.py --setting=... --serve        # step_settings.py's protocol

One iteration is the real jitted train step of the setting's config (`biggan.train_step` or
`diffusion.train_step`: forward, backward, Adam, EMA) on one device, on a fixed random batch,
in a process set up as the train jobs set theirs up (on a CPU-only host,
`gencore.host_memory.configure_cpu_process`).
--precision: 'default' (fp32 at XLA's default precision: TF32 convolutions and products on
NVIDIA GPUs from Ampere on), 'highest' (``jax_default_matmul_precision=highest``: fp32
without TF32) or 'bf16' (``config.model.dtype=bfloat16``).

Without --serve it prints one JSON line: compile seconds, median seconds per iteration,
images/s (BigGAN: real images, batch x num_d_steps), the step's FLOPs (XLA's cost analysis),
the achieved FLOP/s and its fraction of the device's dense peak for that precision (`PEAK`,
null on devices it does not list).
"""

import json
import statistics
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding
from step_settings import PRECISIONS, SETTINGS, serve

from gencore import sharding
from gencore.config_util import load_config
from gencore.host_memory import configure_cpu_process

_SETTING = flags.DEFINE_enum("setting", None, sorted(SETTINGS), "The setting to time.")
_BATCH = flags.DEFINE_integer("batch", 0, "Per-device batch; 0: the setting's.")
_WIDTH = flags.DEFINE_integer("width", 0, "Channel width; 0: the setting's.")
_PRECISION = flags.DEFINE_enum("precision", "default", PRECISIONS, "See the module doc.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed iterations after one warm-up (no --serve).")
_SERVE = flags.DEFINE_bool("serve", False, "Speak step_settings.py's protocol instead.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed iterations before the ready line.")
_SMOKE = flags.DEFINE_bool("smoke", False, "The setting's tiny batch and width (where --batch "
                           "and --width are 0).")

#: Dense peak FLOP/s by precision, keyed by a part of the device name JAX reports (NVIDIA's
#: data sheets, SXM modules; the PCIe H100 separately). 'default' runs fp32 as TF32.
PEAK = {
    "H100 PCIe": {"bf16": 756e12, "default": 378e12, "highest": 51.2e12},
    "H100": {"bf16": 989.4e12, "default": 494.7e12, "highest": 66.9e12},
    "H200": {"bf16": 989.4e12, "default": 494.7e12, "highest": 66.9e12},
}


def peak_flops(device_kind: str, precision: str) -> float | None:
    """The device's dense peak for ``precision`` (first matching key of `PEAK`), or None."""
    for name, peaks in PEAK.items():
        if name in device_kind:
            return peaks[precision]
    return None


def setting_config(name: str, batch: int, width: int, precision: str, smoke: bool = False
                   ) -> ml_collections.ConfigDict:
    """The setting's config at ``batch`` / ``width`` (0: the setting's own, or its smoke
    values when ``smoke``) and precision."""
    setting = SETTINGS[name]
    config = load_config(setting.our_config)
    config.train.batch_size = batch or (setting.smoke_batch if smoke else setting.batch)
    width = width or (setting.smoke_width if smoke else setting.width)
    if setting.family == "biggan":
        config.model.update(g_ch=width, d_ch=width)
        config.train.grad_accum = 1
    else:
        config.model.ch = width
    if precision == "bf16":
        config.model.dtype = "bfloat16"
    return config


def build(name: str, config: ml_collections.ConfigDict):
    """(compiled step, state, batch, params, images per iteration) on one device."""
    family = SETTINGS[name].family
    if family == "biggan":
        from biggan import train_step
    else:
        from diffusion import train_step
    mesh = sharding.make_mesh(jax.devices()[:1])
    train, r = config.train, config.model.resolution
    rng = np.random.default_rng(0)
    if family == "biggan":
        shape = (train.num_d_steps, 1, train.batch_size)
        spec, images = train_step.UPDATE_SPEC, train.batch_size * train.num_d_steps
    else:
        shape, spec, images = (train.batch_size,), sharding.BATCH_SPEC, train.batch_size
    num_classes = config.model.num_classes or 1
    batch = jax.device_put(
        {"image": rng.uniform(-1, 1, (*shape, r, r, 3)).astype(np.float32),
         "label": rng.integers(0, num_classes, shape).astype(np.int32)},
        NamedSharding(mesh, spec))
    state = train_step.create_train_state(config, mesh)
    compiled = train_step.make_train_step(config, mesh).lower(state, batch).compile()
    nets = (state.g_params, state.d_params) if family == "biggan" else (state.params,)
    params = sum(x.size for x in jax.tree.leaves(nets))
    return compiled, state, batch, params, images


def main(argv: list[str]) -> None:
    del argv
    configure_cpu_process()   # as the train jobs do
    if _PRECISION.value == "highest":
        jax.config.update("jax_default_matmul_precision", "highest")
    config = setting_config(_SETTING.value, _BATCH.value, _WIDTH.value, _PRECISION.value,
                            _SMOKE.value)
    start = time.perf_counter()
    compiled, state, batch, params, images = build(_SETTING.value, config)
    compile_seconds = time.perf_counter() - start
    current = [state]

    def iteration() -> None:
        current[0], metrics = compiled(current[0], batch)
        jax.block_until_ready(metrics)

    device = jax.devices()[0]
    if _SERVE.value:
        serve(iteration, {"params": params, "images_per_step": images,
                          "jax": jax.__version__, "device_kind": device.device_kind,
                          "compile_s": round(compile_seconds, 2)}, _WARMUP.value)
        return
    iteration()
    times = []
    for _ in range(_STEPS.value):
        start = time.perf_counter()
        iteration()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    flops = float(compiled.cost_analysis().get("flops", float("nan")))
    peak = peak_flops(device.device_kind, _PRECISION.value)
    print(json.dumps({
        "setting": _SETTING.value, "config": SETTINGS[_SETTING.value].our_config,
        "device": device.platform, "device_kind": device.device_kind,
        "precision": _PRECISION.value, "batch": config.train.batch_size, "params": params,
        "compile_s": round(compile_seconds, 2), "s_per_step_min": round(min(times), 5),
        "s_per_step_median": round(seconds, 5), "images_per_s": round(images / seconds, 2),
        "step_flops": flops, "achieved_flops_per_s": flops / seconds,
        "peak_flops_per_s": peak,
        "fraction_of_peak": round(flops / seconds / peak, 4) if peak else None,
    }))


if __name__ == "__main__":
    flags.mark_flag_as_required("setting")
    app.run(main)
