"""'SAME' stride-1 convolutions (NHWC x HWIO -> NHWC), and the XLA:CPU options the steps use.

Every platform computes convolutions and their gradients with XLA's own convolution. On the
CPU, XLA (jaxlib 0.10.2, measured) hands convolutions and products to YNNPACK by default,
which on the measured machine ran 3x3 convolutions 1.1-1.5x and their kernel gradients up to
3.8x slower than XLA's own path; element-wise operations and reductions, which XLA otherwise
emits itself, ran faster through YNNPACK. `cpu_compiler_options` asks for exactly that split
(YNNPACK fusions of element-wise operations and reductions only); the train steps compile with
it when their mesh is on CPU devices (measurements: benchmarks/README.md, "Convolutions on the
CPU").
"""

from __future__ import annotations

import jax
from jax import lax
from jax.sharding import Mesh

CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type":
        "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE",
}
"""XLA:CPU debug options of the programs compiled for CPU devices (module docstring)."""


def conv_same(x: jax.Array, w: jax.Array) -> jax.Array:
    """'SAME' stride-1 convolution x [B, H, W, Cin] * w [kh, kw, Cin, Cout] -> [B, H, W, Cout]."""
    return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def cpu_compiler_options(mesh: Mesh) -> dict[str, str] | None:
    """`CPU_COMPILER_OPTIONS` for a program on ``mesh``'s CPU devices; None on other devices."""
    return CPU_COMPILER_OPTIONS if mesh.devices.flat[0].platform == "cpu" else None
