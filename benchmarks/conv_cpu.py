r"""Time XLA's 3x3 / 1x1 'same' conv and its gradients on the CPU under XLA's default options
and under `gencore.conv.CPU_COMPILER_OPTIONS`, the ones the train steps compile with.

  python benchmarks/conv_cpu.py [--shapes=100x32x32x256,50x16x16x256] [--repeats=5]

Prints one JSON line per shape: the best of --repeats seconds of the forward (fwd_*), the
input gradient (dx_*) and the kernel gradient (dw_*), each compiled with XLA's default options
(*_default) and with the project's (*_project); then, with the project's options, SiLU(conv +
bias) with a plain ``lax.conv_general_dilated`` (silu_plain, which XLA pulls into a YNNPACK
fusion with its consumers) and with `gencore.conv.conv_same` (silu_conv_same); plus the load
average.
"""

import json
import os
import time

import jax
from absl import app, flags
from jax import lax

from gencore import conv

_SHAPES = flags.DEFINE_list(
    "shapes", ["100x32x32x256", "100x16x16x256", "100x8x8x256", "50x32x32x256", "50x16x16x256",
               "50x8x8x256", "8x128x128x64", "8x64x64x128", "8x32x32x256", "8x16x16x512"],
    "BxHxWxC (C in = C out) shapes to time.")
_KERNEL = flags.DEFINE_integer("kernel", 3, "Kernel size: 3 or 1.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per implementation (best counts).")


def best_seconds(fn, *args, repeats: int, options: dict | None) -> float:
    compiled = jax.jit(fn).lower(*args).compile(options)
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def grad_x(f):
    return lambda x, w, dy: jax.vjp(lambda a: f(a, w), x)[1](dy)[0]


def grad_w(f):
    return lambda x, w, dy: jax.vjp(lambda k: f(x, k), w)[1](dy)[0]


def passes() -> dict:
    """name -> fn(x, w, dy): the forward convolution and its two gradients."""
    return {"fwd": lambda x, w, dy: conv.conv_same(x, w), "dx": grad_x(conv.conv_same),
            "dw": grad_w(conv.conv_same)}


def plain_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def with_consumer(conv_fn):
    """SiLU(conv + bias): a convolution with element-wise consumers, as in the networks."""
    return lambda x, w, dy: jax.nn.silu(conv_fn(x, w) + dy[0, 0, 0])


def main(argv: list[str]) -> None:
    del argv
    k = _KERNEL.value
    for spec in _SHAPES.value:
        b, h, w_, c = map(int, spec.split("x"))
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(keys[0], (b, h, w_, c))
        w = jax.random.normal(keys[1], (k, k, c, c)) / (3 * c**0.5)
        dy = jax.random.normal(keys[2], (b, h, w_, c))
        result = {"shape": spec, "kernel": k, "gflop_direct": 2 * b * h * w_ * c * c * k * k / 1e9}
        for name, fn in passes().items():
            for options, value in (("default", None), ("project", conv.CPU_COMPILER_OPTIONS)):
                result[f"{name}_{options}"] = round(
                    best_seconds(fn, x, w, dy, repeats=_REPEATS.value, options=value), 5)
        for name, conv_fn in (("silu_plain", plain_conv), ("silu_conv_same", conv.conv_same)):
            result[name] = round(best_seconds(with_consumer(conv_fn), x, w, dy,
                                              repeats=_REPEATS.value,
                                              options=conv.CPU_COMPILER_OPTIONS), 5)
        result["loadavg"] = os.getloadavg()
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
