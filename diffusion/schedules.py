"""Noise schedules and the forward process q (DDPM Sec. 2, iDDPM Sec. 3.2 and 4).

Everything is computed in float64 numpy and stored as float32 jnp arrays in a `Schedule`
pytree, so a schedule can be passed to jitted functions. Index `i` below is a position in
the (possibly respaced) schedule: 0 is the least noisy step (DDPM's t = 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import struct

#: The time scale the network sees: timesteps are rescaled to [0, 1000) whatever T is (iDDPM).
MODEL_TIME_SCALE = 1000.0


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """DDPM's linear schedule, scaled by 1000/T so that any T spans the same noise (iDDPM)."""
    scale = 1000.0 / num_steps
    return np.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=np.float64)


def cosine_alpha_bar(t: np.ndarray, s: float = 0.008) -> np.ndarray:
    """iDDPM Eq. 17: f(t) = cos(((t + s) / (1 + s)) * pi / 2)^2 for t in [0, 1] (unnormalised)."""
    return np.cos((np.asarray(t, np.float64) + s) / (1.0 + s) * math.pi / 2) ** 2


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """iDDPM cosine schedule: beta_t = min(1 - abar_t / abar_{t-1}, max_beta), abar = f(t)/f(0)."""
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = cosine_alpha_bar(t, s)
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def get_betas(name: str, num_steps: int) -> np.ndarray:
    """Betas of a named schedule ('linear' or 'cosine') with `num_steps` steps, float64 [T]."""
    if name == "linear":
        return linear_betas(num_steps)
    if name == "cosine":
        return cosine_betas(num_steps)
    raise ValueError(f"unknown noise schedule {name!r}")


def spaced_timesteps(num_steps: int, count: int) -> np.ndarray:
    """`count` evenly spaced timesteps of [0, num_steps), always including 0 and T-1 (iDDPM)."""
    if not 1 <= count <= num_steps:
        raise ValueError(f"cannot take {count} steps out of {num_steps}")
    if count == 1:
        return np.array([num_steps - 1])
    return np.unique(np.round(np.linspace(0, num_steps - 1, count)).astype(np.int64))


def _as_f32(a: np.ndarray) -> jnp.ndarray:
    return jnp.asarray(a, dtype=jnp.float32)


@struct.dataclass
class Schedule:
    """Precomputed diffusion quantities, each a float32 array [N] indexed by step i.

    `timesteps` maps step i to the timestep of the original T-step process (identity unless
    respaced); `num_original_steps` is that T.
    """

    betas: jnp.ndarray
    alphas_cumprod: jnp.ndarray
    alphas_cumprod_prev: jnp.ndarray
    sqrt_alphas_cumprod: jnp.ndarray
    sqrt_one_minus_alphas_cumprod: jnp.ndarray
    sqrt_recip_alphas_cumprod: jnp.ndarray
    sqrt_recipm1_alphas_cumprod: jnp.ndarray
    posterior_variance: jnp.ndarray
    posterior_log_variance_clipped: jnp.ndarray
    posterior_mean_coef1: jnp.ndarray
    posterior_mean_coef2: jnp.ndarray
    log_betas_clipped: jnp.ndarray
    timesteps: jnp.ndarray
    num_original_steps: int = struct.field(pytree_node=False)

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])

    @classmethod
    def from_betas(
        cls, betas: np.ndarray, timesteps: np.ndarray | None = None,
        num_original_steps: int | None = None,
    ) -> Schedule:
        """Builds every quantity from float64 betas [N] (DDPM Eq. 4, 6, 7)."""
        betas = np.asarray(betas, np.float64)
        if betas.ndim != 1 or np.any(betas <= 0) or np.any(betas >= 1):
            raise ValueError("betas must be a 1-D array in (0, 1)")
        n = betas.shape[0]
        timesteps = np.arange(n) if timesteps is None else np.asarray(timesteps)
        alphas = 1.0 - betas
        abar = np.cumprod(alphas)
        abar_prev = np.append(1.0, abar[:-1])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        # The posterior variance is 0 at i = 0; its log is clipped to the value at i = 1.
        post_var_clipped = np.append(post_var[1], post_var[1:]) if n > 1 else betas
        return cls(
            betas=_as_f32(betas),
            alphas_cumprod=_as_f32(abar),
            alphas_cumprod_prev=_as_f32(abar_prev),
            sqrt_alphas_cumprod=_as_f32(np.sqrt(abar)),
            sqrt_one_minus_alphas_cumprod=_as_f32(np.sqrt(1.0 - abar)),
            sqrt_recip_alphas_cumprod=_as_f32(np.sqrt(1.0 / abar)),
            sqrt_recipm1_alphas_cumprod=_as_f32(np.sqrt(1.0 / abar - 1.0)),
            posterior_variance=_as_f32(post_var),
            posterior_log_variance_clipped=_as_f32(np.log(post_var_clipped)),
            posterior_mean_coef1=_as_f32(betas * np.sqrt(abar_prev) / (1.0 - abar)),
            posterior_mean_coef2=_as_f32((1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar)),
            log_betas_clipped=_as_f32(np.log(np.append(post_var_clipped[0], betas[1:]))),
            timesteps=jnp.asarray(timesteps, jnp.int32),
            num_original_steps=int(num_original_steps or n),
        )

    def model_time(self, i: jnp.ndarray) -> jnp.ndarray:
        """The time fed to the network for steps i [B]: original timestep * 1000 / T, float32."""
        return self.timesteps[i].astype(jnp.float32) * (MODEL_TIME_SCALE / self.num_original_steps)

    def q_mean_variance(
        self, x0: jnp.ndarray, i: jnp.ndarray
    ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (DDPM Eq. 4): mean, var, log var."""
        mean = per_example(self.sqrt_alphas_cumprod[i], x0) * x0
        var = per_example(jnp.square(self.sqrt_one_minus_alphas_cumprod[i]), x0)
        return mean, var, jnp.log(var)

    def q_sample(self, x0: jnp.ndarray, i: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, x0 and noise [B, ...], i [B]."""
        return (per_example(self.sqrt_alphas_cumprod[i], x0) * x0
                + per_example(self.sqrt_one_minus_alphas_cumprod[i], x0) * noise)

    def q_posterior(
        self, x0: jnp.ndarray, x_t: jnp.ndarray, i: jnp.ndarray
    ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        """q(x_{t-1} | x_t, x_0) (DDPM Eq. 6-7): mean, variance, clipped log variance."""
        mean = (per_example(self.posterior_mean_coef1[i], x_t) * x0
                + per_example(self.posterior_mean_coef2[i], x_t) * x_t)
        return (mean, per_example(self.posterior_variance[i], x_t),
                per_example(self.posterior_log_variance_clipped[i], x_t))


def per_example(v: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
    """Reshapes per-example values [B] to broadcast against `like` [B, ...]."""
    return jnp.reshape(v, v.shape + (1,) * (like.ndim - v.ndim))


def make_schedule(name: str, num_steps: int) -> Schedule:
    """The full `num_steps`-step schedule of a named noise schedule."""
    return Schedule.from_betas(get_betas(name, num_steps))


def respace(betas: np.ndarray, timesteps: Sequence[int] | np.ndarray) -> Schedule:
    """Schedule on a subsequence of timesteps (iDDPM Sec. 4): beta_i = 1 - abar_i / abar_{i-1}.

    `betas` are the float64 betas of the original process, `timesteps` increasing indices.
    """
    betas = np.asarray(betas, np.float64)
    timesteps = np.asarray(timesteps, np.int64)
    if np.any(np.diff(timesteps) <= 0) or timesteps[0] < 0 or timesteps[-1] >= len(betas):
        raise ValueError("timesteps must be strictly increasing indices into betas")
    abar = np.cumprod(1.0 - betas)[timesteps]
    new_betas = 1.0 - abar / np.append(1.0, abar[:-1])
    return Schedule.from_betas(new_betas, timesteps, num_original_steps=len(betas))
