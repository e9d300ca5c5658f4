r"""Our 3x3 convolution against PyTorch's on the same machine, at the shapes of a network,
alternating the two in one run.

  REFERENCE_PYTHON=/path/to/torch-venv/bin/python python3 benchmarks/conv_side_by_side.py \
      [--shapes=8x32x32x128-128,8x8x8x256-256] [--rounds=3] [--repeats=15]

One iteration at shape BxHxWxCin-Cout is SiLU(conv(x) + b) with its gradients with respect to
x, the kernel and b, in float32, as a training step computes them: ours is
`gencore.conv.conv_same` under `jax.grad`, compiled with `gencore.conv.CPU_COMPILER_OPTIONS`
(NHWC); the reference is PyTorch's ``nn.Conv2d`` under ``torch.autograd.grad`` (NCHW, as
improved-diffusion and BigGAN-PyTorch run it), in a process of its own
(``$REFERENCE_PYTHON benchmarks/conv_side_by_side.py --reference``, default this Python).
Each round times every shape on our side, then starts the reference process, which times every
shape the same way. The default shapes are those of the DDPM CIFAR-10 U-Net at batch 8.

Prints one JSON line per shape and round: ``{"shape", "round", "ours_s", "reference_s",
"ratio_ours_over_reference"}`` (medians of --repeats iterations; ratio > 1: ours faster).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

DDPM_CIFAR10_SHAPES = ("8x32x32x3-128,8x32x32x128-128,8x32x32x128-256,8x32x32x384-128,"
                       "8x16x16x256-256,8x16x16x512-256,8x8x8x256-256,8x8x8x512-256,"
                       "8x4x4x256-256,8x4x4x512-256,8x32x32x128-3")


def parse_shape(spec: str) -> tuple[int, int, int, int, int]:
    """'BxHxWxCin-Cout' -> (B, H, W, Cin, Cout)."""
    dims, cout = spec.split("-")
    b, h, w, cin = map(int, dims.split("x"))
    return b, h, w, cin, int(cout)


def median_seconds(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def our_iterations(shapes: list[str]) -> dict:
    """shape -> a no-argument function running our iteration once (compiled here)."""
    import jax
    import jax.numpy as jnp

    from gencore.conv import CPU_COMPILER_OPTIONS, conv_same

    def loss(x, w, bias, ct):
        return jnp.sum(jax.nn.silu(conv_same(x, w) + bias) * ct)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    runs = {}
    for spec in shapes:
        b, h, w, cin, cout = parse_shape(spec)
        keys = jax.random.split(jax.random.key(0), 3)
        args = (jax.random.normal(keys[0], (b, h, w, cin)),
                jax.random.normal(keys[1], (3, 3, cin, cout)) / (3 * cin**0.5),
                jnp.zeros((cout,)), jax.random.normal(keys[2], (b, h, w, cout)))
        compiled = grads.lower(*args).compile(CPU_COMPILER_OPTIONS)
        runs[spec] = lambda c=compiled, a=args: jax.block_until_ready(c(*a))
    return runs


def reference_timings(shapes: list[str], repeats: int) -> dict:
    """shape -> median seconds of PyTorch's iteration (run in the reference process)."""
    import torch

    result = {}
    for spec in shapes:
        b, h, w, cin, cout = parse_shape(spec)
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        x = torch.randn(b, cin, h, w, requires_grad=True)
        ct = torch.randn(b, cout, h, w)

        def run(conv=conv, x=x, ct=ct):
            y = torch.nn.functional.silu(conv(x))
            torch.autograd.grad((y * ct).sum(), [x, conv.weight, conv.bias])

        result[spec] = median_seconds(run, repeats)
    return result


def main() -> None:
    # argparse, not absl: the reference's Python runs this file too.
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=DDPM_CIFAR10_SHAPES,
                        help="comma-separated BxHxWxCin-Cout shapes of a 'same' 3x3 convolution")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of ours, then the reference")
    parser.add_argument("--repeats", type=int, default=15,
                        help="timed iterations per shape and round")
    parser.add_argument("--reference", action="store_true",
                        help="be the PyTorch side: print its timings")
    args = parser.parse_args()
    shapes = args.shapes.split(",")
    for spec in shapes:
        try:
            parse_shape(spec)
        except ValueError:
            parser.error(f"--shapes entry {spec!r} is not BxHxWxCin-Cout, e.g. 8x32x32x128-128.")
    if args.reference:
        print(json.dumps(reference_timings(shapes, args.repeats)))
        return
    ours = our_iterations(shapes)
    command = [os.environ.get("REFERENCE_PYTHON", sys.executable), os.path.abspath(__file__),
               "--reference", f"--shapes={','.join(shapes)}", f"--repeats={args.repeats}"]
    for round_index in range(args.rounds):
        our_seconds = {spec: median_seconds(run, args.repeats) for spec, run in ours.items()}
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        reference = json.loads(output.strip().splitlines()[-1])
        for spec in shapes:
            print(json.dumps({
                "shape": spec, "round": round_index, "ours_s": round(our_seconds[spec], 5),
                "reference_s": round(reference[spec], 5),
                "ratio_ours_over_reference": round(reference[spec] / our_seconds[spec], 3)}),
                flush=True)


if __name__ == "__main__":
    main()
