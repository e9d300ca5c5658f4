"""'SAME' stride-1 convolutions (NHWC x HWIO -> NHWC), and the XLA:CPU options the steps use.

Every platform computes convolutions and their gradients with XLA's own convolution. On the
CPU, XLA (jaxlib 0.10.2, measured) hands convolutions and products to YNNPACK by default,
which on the measured machine ran 3x3 convolutions 1.1-1.5x and their kernel gradients up to
3.8x slower than XLA's own path; element-wise operations and reductions, which XLA otherwise
emits itself, ran faster through YNNPACK. `cpu_compiler_options` asks for exactly that split
(YNNPACK fusions of element-wise operations and reductions only); the train steps compile with
it when their mesh is on CPU devices. Even then XLA pulls a convolution into the YNNPACK
fusion of the element-wise operation that consumes it (a bias, an activation, a residual sum),
and YNNPACK computes it there; `conv_same` therefore passes its output, and the gradients of
its inputs, through `unfused`, which on the CPU keeps the convolution, its input gradient and
its kernel gradient out of such fusions (measurements: benchmarks/README.md, "Convolutions on
the CPU").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh

CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type":
        "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE",
}
"""XLA:CPU debug options of the programs compiled for CPU devices (module docstring)."""


def unfused(x: jax.Array) -> jax.Array:
    """``x`` itself. Lowered for the CPU it is a ``reduce_precision`` to x's own precision (no
    change to any value), which XLA does not put in a YNNPACK fusion, so the convolution that
    produces or consumes x stays XLA's own; its gradient is the same operation on the
    cotangent, so the convolution's input and kernel gradients stay out of fusions too."""
    info = jnp.finfo(x.dtype)
    return lax.platform_dependent(
        x, cpu=lambda x: lax.reduce_precision(x, info.nexp, info.nmant), default=lambda x: x)


@jax.custom_jvp
def unfused_output(y: jax.Array) -> jax.Array:
    """`unfused` on the value only (a convolution's output); tangents pass unchanged."""
    return unfused(y)


@unfused_output.defjvp
def _unfused_output_jvp(primals: tuple, tangents: tuple) -> tuple:
    return unfused_output(primals[0]), tangents[0]


@jax.custom_jvp
def unfused_gradient(x: jax.Array) -> jax.Array:
    """``x`` itself, with `unfused` on its gradient only (a convolution's input or kernel: the
    input and kernel gradient convolutions' outputs), adding no pass over x."""
    return x


@unfused_gradient.defjvp
def _unfused_gradient_jvp(primals: tuple, tangents: tuple) -> tuple:
    return primals[0], unfused(tangents[0])


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, *args, **kwargs) -> jax.Array:
    """`jax.lax.conv_general_dilated` (same arguments) kept, with its two gradients, out of
    YNNPACK fusions on the CPU (`unfused`); e.g. ``flax.linen.Conv(...,
    conv_general_dilated=conv.conv_general_dilated)``."""
    y = lax.conv_general_dilated(unfused_gradient(lhs), unfused_gradient(rhs), *args, **kwargs)
    return unfused_output(y)


def conv_same(x: jax.Array, w: jax.Array) -> jax.Array:
    """'SAME' stride-1 convolution x [B, H, W, Cin] * w [kh, kw, Cin, Cout] -> [B, H, W, Cout]
    (XLA's convolution; on the CPU it and its two gradients are kept out of YNNPACK fusions:
    `unfused`)."""
    return conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def cpu_compiler_options(mesh: Mesh) -> dict[str, str] | None:
    """`CPU_COMPILER_OPTIONS` for a program on ``mesh``'s CPU devices; None on other devices."""
    return CPU_COMPILER_OPTIONS if mesh.devices.flat[0].platform == "cpu" else None
