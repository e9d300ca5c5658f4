"""The settings that `side_by_side.py` times on both sides, and the line protocol of one side.

Standard library only: the reference side (`reference_step.py`) imports this module in a
Python that has PyTorch but not JAX.

Protocol: a side's process builds its model, optimiser and batch, runs ``warmup`` untimed
iterations, and prints one JSON line ``{"ready": true, "params": ..., "images_per_step": ...}``
on its standard output. Then, for every line ``N`` it reads on its standard input, it times N
iterations (each waits for the device) and prints ``{"times": [seconds, ...]}``. It exits at
the end of its input. Anything else the process prints goes to standard error.
"""

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One training setting, as both sides build it.

    family: 'biggan' (one iteration = num_d_steps D steps + 1 G step, images counted as
      batch x num_d_steps real images, as BigGAN-PyTorch counts them) or 'diffusion'
      (one iteration = one step on ``batch`` images).
    our_config: the config file (and variant) of this repository.
    batch: the per-device batch of the paper's setting (BigGAN: per D/G update).
    width: the channel width of the setting (BigGAN: G and D ch; U-Net: ch).
    smoke_batch, smoke_width: the tiny setting of ``--smoke``.
    extra_params: width -> how many parameters ours has beyond the reference's, a known
      difference of the two layouts that ``extra_params_reason`` states (None: none);
      side_by_side.py fails on any other difference.
    """

    family: str
    our_config: str
    batch: int
    width: int
    smoke_batch: int
    smoke_width: int
    extra_params: Callable[[int], int] | None = None
    extra_params_reason: str = ""


SETTINGS = {
    # BigGAN-PyTorch's scripts/launch_cifar_ema.sh: ch 64, batch 50, 4 D steps per G step.
    "biggan_cifar10": Setting("biggan", "configs/biggan/cifar10.py:pytorch_reference",
                              batch=50, width=64, smoke_batch=4, smoke_width=16),
    # BigGAN 128 (Table 1 row 8, ch 96) at a per-device batch that both sides hold at once.
    "biggan128": Setting("biggan", "configs/biggan/imagenet128.py:row8",
                         batch=64, width=96, smoke_batch=2, smoke_width=16),
    # BigGAN-deep 128 (ch 128), the same per-device batch.
    "biggan_deep128": Setting("biggan", "configs/biggan/imagenet128.py:deep",
                              batch=64, width=128, smoke_batch=2, smoke_width=16,
                              extra_params=lambda ch: (ch - 3) * (9 * ch + 1),
                              extra_params_reason=(
                                  "G's output 3x3 conv holds ch output channels (kernel and "
                                  "bias) of which it computes 3, as DeepMind's released "
                                  "BigGAN-deep does (its weights load into ours), where "
                                  "BigGAN-PyTorch's holds 3: (ch - 3) * (9 ch + 1) more "
                                  "parameters, no more convolution work.")),
    # DDPM's CIFAR-10 U-Net (35,746,307 parameters), batch 128 (DDPM App. B).
    "ddpm_cifar10": Setting("diffusion", "configs/diffusion/ddpm_cifar10.py",
                            batch=128, width=128, smoke_batch=2, smoke_width=32),
    # iDDPM CIFAR-10 L_hybrid: cosine schedule, learned sigma, T = 4000, batch 128.
    "iddpm_cifar10_hybrid": Setting("diffusion", "configs/diffusion/iddpm_cifar10.py:cosine_hybrid",
                                    batch=128, width=128, smoke_batch=2, smoke_width=32),
}

PRECISIONS = ("default", "highest", "bf16")
"""default: fp32 at each framework's default (on NVIDIA GPUs from Ampere on, XLA and cuDNN use
TF32 for fp32 convolutions and products; PyTorch is told to allow TF32 for both);
highest: fp32 without TF32 on both sides; bf16: our model in bfloat16 (the reference side
has no bf16 training path and stays at 'default')."""


def serve(run_iteration: Callable[[], object], info: dict, warmup: int) -> None:
    """Runs the protocol above on this process's standard input / output.

    run_iteration: one training iteration that returns after the device has finished it.
    info: the ready line's fields (``params`` and ``images_per_step`` at least).
    """
    protocol_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)              # everything else, C libraries included, goes to stderr
    sys.stdout = sys.stderr
    for _ in range(warmup):
        run_iteration()
    protocol_out.write(json.dumps({"ready": True, **info}) + "\n")
    protocol_out.flush()
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            run_iteration()
            times.append(time.perf_counter() - start)
        protocol_out.write(json.dumps({"times": times}) + "\n")
        protocol_out.flush()
