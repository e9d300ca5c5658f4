"""Sample-quality metrics on feature sets: FID, IS, KID, improved precision/recall, accuracy.

All take NumPy arrays of features / logits computed by a `FeatureExtractor` (Inception pool3 and
logits for the standard metrics; the digits classifier for the embedded default data, whose
figures are data-specific and not comparable with Inception-based ones).

- FID (Heusel et al. 2017, Eq. 6): ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64.
- IS (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over 10 splits.
- KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3,
  mean and std over random subsets.
- Improved precision / recall (Kynkaanniemi et al. 2019, Eq. 1-2): k-NN (k = 3) hyperspheres
  around each real (fake) feature; precision = share of fakes inside the real manifold, recall =
  share of reals inside the fake manifold.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.special


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, as np.cov) of features [N, D], in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"Need features [N >= 2, D], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    Tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix S1^(1/2) S2 S1^(1/2) (same eigenvalues as S1 S2), which needs no complex sqrtm and
    stays finite for singular covariances (N < D); tiny negative round-off eigenvalues are clipped.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"Shapes differ: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}"
        )
    eigvals, eigvecs = scipy.linalg.eigh((sigma1 + sigma1.T) / 2)
    sqrt_sigma1 = (eigvecs * np.sqrt(np.clip(eigvals, 0, None))) @ eigvecs.T
    middle = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    trace_sqrt = np.sqrt(np.clip(scipy.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets [N1, D] and [N2, D]."""
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))


def inception_score(logits: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """IS of class logits [N, K]: (mean, std) over `num_splits` consecutive equal splits.

    IS = exp(mean_x KL(p(y|x) || p(y))), p(y) the split's mean prediction (Salimans et al. 2016),
    split and std (ddof 0) as in the original code. Any rows past N // num_splits * num_splits
    are ignored.
    """
    logits = np.asarray(logits, dtype=np.float64)
    split_size = logits.shape[0] // num_splits
    if split_size < 1:
        raise ValueError(f"{logits.shape[0]} predictions cannot make {num_splits} splits")
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    scores = []
    for i in range(num_splits):
        part = log_p[i * split_size : (i + 1) * split_size]
        log_py = scipy.special.logsumexp(part, axis=0) - np.log(split_size)
        kl = np.sum(np.exp(part) * (part - log_py), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(features1: np.ndarray, features2: np.ndarray) -> float:
    """Unbiased MMD^2 estimate with the cubic polynomial kernel (Gretton et al. 2012, Eq. 3)."""
    x, y = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    m, n = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    term_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    term_yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(term_xx + term_yy - 2 * k_xy.mean())


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: (mean, std) of the unbiased MMD^2 over `num_subsets` random subsets of each set.

    Subsets are drawn without replacement within a subset; `subset_size` is capped at the
    smaller set's size.
    """
    size = min(subset_size, len(features1), len(features2))
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            features1[rng.choice(len(features1), size, replace=False)],
            features2[rng.choice(len(features2), size, replace=False)],
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


@functools.partial(jax.jit, static_argnames=("k",))
def _kth_neighbour_distance(block: jax.Array, points: jax.Array, k: int) -> jax.Array:
    """Distance from each row of `block` to its k-th nearest row of `points` (itself included)."""
    d2 = _squared_distances(block, points)
    return jnp.sqrt(-jax.lax.top_k(-d2, k + 1)[0][:, k])


@jax.jit
def _inside_any_ball(block: jax.Array, centres: jax.Array, radii: jax.Array) -> jax.Array:
    """Whether each row of `block` lies within radius_j of some centre_j."""
    d2 = _squared_distances(block, centres)
    return jnp.any(d2 <= jnp.square(radii)[None, :], axis=1)


def _squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    cross = jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST)
    d2 = jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :] - 2 * cross
    return jnp.maximum(d2, 0.0)


def _blocks(features: np.ndarray, block_size: int):
    for start in range(0, len(features), block_size):
        yield jnp.asarray(features[start : start + block_size])


def _manifold_radii(features: np.ndarray, k: int, block_size: int) -> jax.Array:
    points = jnp.asarray(features)
    return jnp.concatenate(
        [_kth_neighbour_distance(b, points, k) for b in _blocks(features, block_size)]
    )


def _coverage(queries: np.ndarray, centres: np.ndarray, radii: jax.Array, block_size: int) -> float:
    centres = jnp.asarray(centres)
    inside = [_inside_any_ball(b, centres, radii) for b in _blocks(queries, block_size)]
    return float(np.mean(np.concatenate(jax.device_get(inside))))


def precision_recall(
    real_features: np.ndarray, fake_features: np.ndarray, k: int = 3, block_size: int = 1000
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN radii, k = 3.

    The manifold of a set is the union of balls around each of its points, of radius the distance
    to the point's k-th nearest other point. Distances are computed in float32 on the default
    JAX device, `block_size` rows at a time.
    """
    real = np.asarray(real_features, np.float32)
    fake = np.asarray(fake_features, np.float32)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"Need more than k={k} real and fake features")
    precision = _coverage(fake, real, _manifold_radii(real, k, block_size), block_size)
    recall = _coverage(real, fake, _manifold_radii(fake, k, block_size), block_size)
    return precision, recall


def classification_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose arg-max equals the label (samples of class y classified as y)."""
    return float(np.mean(np.argmax(np.asarray(logits), axis=1) == np.asarray(labels)))


def sample_quality_metrics(
    fake_features: np.ndarray,
    fake_logits: np.ndarray,
    real_mu: np.ndarray,
    real_sigma: np.ndarray,
    real_features: np.ndarray,
    num_is_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = 3,
    pr_max_samples: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """FID, IS (mean/std), KID (mean/std), precision and recall of fakes against a reference.

    FID uses the reference's full-split statistics (real_mu, real_sigma); KID and precision /
    recall use the stored reference features. Precision / recall compare equally many real and
    fake features (at most `pr_max_samples`, a seeded random subset).
    """
    rng = np.random.default_rng(seed)
    n = min(len(real_features), len(fake_features), pr_max_samples)
    pr_real = real_features[rng.choice(len(real_features), n, replace=False)]
    pr_fake = fake_features[rng.choice(len(fake_features), n, replace=False)]
    precision, recall = precision_recall(pr_real, pr_fake, k=pr_k)
    is_mean, is_std = inception_score(fake_logits, num_is_splits)
    kid_mean, kid_std = kernel_inception_distance(
        real_features, fake_features, kid_subsets, kid_subset_size, seed
    )
    fid = frechet_distance(*gaussian_statistics(fake_features), real_mu, real_sigma)
    return dict(
        fid=fid,
        is_mean=is_mean,
        is_std=is_std,
        kid_mean=kid_mean,
        kid_std=kid_std,
        precision=precision,
        recall=recall,
    )
