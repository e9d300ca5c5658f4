r"""Training-step FLOPs: the analytic count of `step_flops` against XLA's cost analysis.

  PYTHONPATH=. python benchmarks/train_step_flops.py [--configs=biggan_digits,ddpm_cifar10]
      [--batch=8]

For each config, compiles the real train step (``biggan.train_step`` / ``diffusion.train_step``)
on one device of the default backend, without running it, and prints one JSON line:

- ``analytic``: the network convolutions and matrix products of one step, forward and
  gradients (`step_flops` module docstring's rule), padding taps included;
- ``xla``: ``compiled.cost_analysis()['flops']``, and ``ratio`` = xla / analytic;
- ``reconciliation``: xla - analytic split into parts that sum to it exactly (FLOPs and as a
  fraction of ``analytic``): convolution taps on padding, which XLA does not count
  (``conv_padding_taps``, negative); XLA's network products beyond the
  analytic count in its convention, products XLA left without a name scope included
  (``matmul_residual``); spectral norm (power
  iteration, W / sigma); orthogonal regularization (Gram matrices, Eq. 3); BatchNorm / GroupNorm;
  other elementwise work in the networks (activations, residual sums, biases, softmax,
  up/down-sampling); the optimiser, EMA and loss; random numbers; and what the HLO parse of
  `step_flops.xla_breakdown` does not reproduce (``not_parsed``).

Batch: each config's own (``--batch`` overrides the 128 px ones: the count is linear in it but
for the batch-independent weight work, so FLOPs per image are what to compare).
"""

import json
import os
import sys
import time

import jax
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import step_flops  # noqa: E402

from gencore import sharding  # noqa: E402
from gencore.config_util import load_config  # noqa: E402
from launch.compile_check import abstract_programs  # noqa: E402

CONFIGS = {
    "biggan_digits": ("configs/biggan/digits.py", None),
    "biggan_cifar10": ("configs/biggan/cifar10.py", 64),
    "biggan_cifar10_pytorch_reference": ("configs/biggan/cifar10.py:pytorch_reference", None),
    "biggan128_row8": ("configs/biggan/imagenet128.py:row8", 8),
    "biggan_deep128": ("configs/biggan/imagenet128.py:deep", 8),
    "diffusion_digits": ("configs/diffusion/digits.py", None),
    "ddpm_cifar10": ("configs/diffusion/ddpm_cifar10.py", 16),
}
_CONFIGS = flags.DEFINE_list("configs", list(CONFIGS), "Which of CONFIGS to compile.")
_BATCH = flags.DEFINE_integer("batch", 0, "Batch for the configs with a reduced batch in "
                              "CONFIGS (0: the one there); the others keep their own.")


def compiled_step(config):
    """The config's compiled train step on one device, lowered from the abstract state and
    batch the TPU fit check uses (`launch.compile_check.abstract_programs`)."""
    programs, _ = abstract_programs(config, sharding.make_mesh(jax.devices()[:1]), eval_batch=1)
    step, args = programs["train"]
    return step.lower(*args).compile()


def reconciliation(analytic: dict, xla: float, parts: dict[str, float]) -> dict[str, float]:
    """xla - analytic['train'] as parts summing to it exactly (see module docstring)."""
    get = lambda key: parts.get(key, 0.0)   # noqa: E731
    out = {
        "conv_padding_taps": analytic["train_xla_convention"] - analytic["train"],
        "matmul_residual": get("network_matmuls") + get("other_matmuls")
        - analytic["train_xla_convention"],
        "spectral_norm": get("spectral_norm_matmuls") + get("spectral_norm_elementwise"),
        "ortho_reg": get("ortho_reg_matmuls") + get("ortho_reg_elementwise"),
        "normalisation": get("network_normalisation"),
        "network_elementwise": get("network_elementwise"),
        "optimizer_ema_loss": get("optimizer_ema_loss"),
        "random_numbers": get("random_numbers"),
    }
    out["not_parsed"] = xla - sum(parts.values())
    return out


def measure(name: str, batch: int) -> dict:
    """One config's JSON line (module docstring)."""
    path, reduced = CONFIGS[name]
    config = load_config(path)
    if reduced:
        config.train.batch_size = batch or reduced
        config.train.grad_accum = 1
    diffusion = path.startswith("configs/diffusion")
    start = time.perf_counter()
    counted = (step_flops.unet_step_flops(config) if diffusion
               else step_flops.biggan_step_flops(config))
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = compiled_step(config)
    compile_s = time.perf_counter() - start
    xla = float(compiled.cost_analysis()["flops"])
    parts = step_flops.xla_breakdown(compiled.as_text())
    analytic = counted["step"]
    rec = reconciliation(analytic, xla, parts)
    b = config.train.batch_size
    images = b * (1 if diffusion else config.train.num_d_steps)
    ratio = xla / analytic["train"]
    return {
        "config": name, "path": path, "backend": jax.default_backend(), "batch_size": b,
        "num_d_steps": None if diffusion else config.train.num_d_steps,
        "analytic": analytic["train"], "xla": xla, "ratio": round(ratio, 4),
        "within_10pct": abs(ratio - 1) <= 0.1,
        "analytic_per_real_image": analytic["train"] / images,
        "xla_per_real_image": xla / images,
        "analytic_forward": analytic["forward"],
        "analytic_xla_convention": analytic["train_xla_convention"],
        "matmul_ratio": round((parts.get("network_matmuls", 0.0) + parts.get("other_matmuls", 0.0))
                              / analytic["train_xla_convention"], 4),
        "reconciliation": rec,
        "reconciliation_fraction": {k: round(v / analytic["train"], 4) for k, v in rec.items()},
        **{k: v for k, v in counted.items() if k.endswith("per_image")},
        "trace_s": round(trace_s, 1), "compile_s": round(compile_s, 1),
    }


def main(argv: list[str]) -> None:
    del argv
    for name in _CONFIGS.value:
        print(json.dumps(measure(name, _BATCH.value)), flush=True)


if __name__ == "__main__":
    app.run(main)
