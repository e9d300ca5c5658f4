r"""Sampling speed of the released BigGAN-deep 128 G (random weights; no download), fp32.

  python benchmarks/pretrained_sample.py [--batch=8] [--repeats=10] [--notorch]

Times our compiled G (`biggan.pretrained.PretrainedGenerator`: BN statistics read from the
per-truncation tables, weights on the device) on one batch, and, when torch and
pytorch-pretrained-biggan are installed, the PyTorch package's model on the same batch,
alternating the two so that both see the same load from other processes. Prints one JSON line:
median seconds per batch, images/s, the ratio, and the load average before and after.
"""

import json
import os
import time

import jax
import numpy as np
from absl import app, flags

from biggan import pretrained
from biggan.latents import truncated_normal_by_resampling

_BATCH = flags.DEFINE_integer("batch", 8, "Images per batch.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed batches per model (after one warm-up).")
_TORCH = flags.DEFINE_bool("torch", True, "Also time pytorch-pretrained-biggan's model.")
TRUNCATION = 0.4
REFERENCE_IMAGES_PER_S = 8.5
"""pytorch-pretrained-biggan's BigGAN-deep 128, batch 8, fp32, in images/s on a 2-core CPU;
the JSON line's target is 1.5x this. Measured figures: benchmarks/README.md."""


def random_generator(seed: int = 0) -> pretrained.PretrainedGenerator:
    """BigGAN-deep 128 G with random weights and BN tables of sensible scale."""
    cfg = pretrained.model_config(128)
    shapes = pretrained.abstract_variables(cfg)
    rng = np.random.default_rng(seed)

    def fill(path, s):
        if path[-1].key == "var":
            return rng.uniform(0.5, 2.0, s.shape).astype(np.float32)
        return (0.02 * rng.standard_normal(s.shape)).astype(np.float32)

    variables = jax.tree_util.tree_map_with_path(fill, shapes)
    return pretrained.PretrainedGenerator(cfg, variables["params"], variables["spectral"],
                                          variables["bn_tables"])


def torch_model():
    """pytorch-pretrained-biggan's BigGAN-deep 128 with random weights, or None."""
    try:
        import torch
        from pytorch_pretrained_biggan import BigGAN, BigGANConfig
    except ImportError:
        return None
    torch.manual_seed(0)
    model = BigGAN(BigGANConfig())
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "running_vars"):
                module.running_vars.uniform_(0.5, 2.0)
        model.generator.bn.weight.fill_(1.0)
        model.generator.bn.bias.zero_()
        model.train()      # one power-iteration step makes the stored SN vectors consistent
        model(torch.randn(2, 128), torch.eye(1000)[:2], TRUNCATION)
    model.eval()
    return model


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    del argv
    batch = _BATCH.value
    load_before = os.getloadavg()
    generator = random_generator()
    z = np.asarray(truncated_normal_by_resampling(jax.random.key(0), (batch, 128), TRUNCATION))
    labels = np.arange(batch) % 1000
    ours = lambda: generator(z, labels, TRUNCATION)  # noqa: E731
    compile_s = timed(ours)
    model = torch_model() if _TORCH.value else None
    if model is not None:
        import torch

        one_hot = torch.eye(1000)[torch.from_numpy(labels)]
        z_torch = torch.from_numpy(z.copy())

        def theirs() -> None:
            with torch.no_grad():
                model(z_torch, one_hot, TRUNCATION)

        theirs()
    ours_s, theirs_s = [], []
    for _ in range(_REPEATS.value):
        ours_s.append(timed(ours))
        if model is not None:
            theirs_s.append(timed(theirs))
    median = float(np.median(ours_s))
    result = dict(benchmark="pretrained_sample", model="BigGAN-deep 128 G", batch=batch,
                  dtype="float32", repeats=_REPEATS.value, compile_and_first_s=round(compile_s, 2),
                  median_s=round(median, 4), images_per_s=round(batch / median, 2),
                  target_images_per_s=1.5 * REFERENCE_IMAGES_PER_S)
    if model is not None:
        torch_median = float(np.median(theirs_s))
        result.update(torch_median_s=round(torch_median, 4),
                      torch_images_per_s=round(batch / torch_median, 2),
                      torch_threads=torch.get_num_threads(),
                      speedup_vs_torch=round(torch_median / median, 3))
    result.update(cpu_count=os.cpu_count(), loadavg_before=load_before,
                  loadavg_after=os.getloadavg(), jax_backend=jax.default_backend())
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
