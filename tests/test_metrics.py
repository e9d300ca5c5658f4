"""FID, IS, KID and precision/recall against closed-form cases and brute-force definitions."""

import itertools

import numpy as np
import pytest
import scipy.linalg

from gencore import metrics


def _random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_fid_of_identical_sets_is_zero():
    features = np.random.default_rng(0).normal(size=(500, 32)) * 3.0 + 1.0
    assert abs(metrics.fid_from_features(features, features)) < 1e-8


def test_frechet_distance_of_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    got = metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-12)  # 5 + (2 + 2 + 30.25) = 39.25 - 2 * 6.5


def test_frechet_distance_of_scaled_full_covariance():
    # sigma2 = c sigma1 (not diagonal): Tr((sigma1 sigma2)^1/2) = sqrt(c) Tr(sigma1).
    rng = np.random.default_rng(1)
    sigma, c = _random_spd(rng, 16), 2.5
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    expected = np.sum((mu1 - mu2) ** 2) + (1 + c - 2 * np.sqrt(c)) * np.trace(sigma)
    assert metrics.frechet_distance(mu1, sigma, mu2, c * sigma) == pytest.approx(
        expected, rel=1e-10
    )


def test_frechet_distance_matches_sqrtm_formula_for_non_commuting_covariances():
    rng = np.random.default_rng(2)
    s1, s2 = _random_spd(rng, 20), _random_spd(rng, 20)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_gaussian_samples_approaches_the_closed_form():
    rng = np.random.default_rng(3)
    n = 200_000
    x = rng.normal(size=(n, 2)) * np.array([1.0, 2.0])
    y = rng.normal(size=(n, 2)) * np.array([2.0, 2.0]) + np.array([3.0, 0.0])
    expected = 9.0 + (1 + 4 - 2 * 2) + 0.0  # |dmu|^2 + (sqrt(1) - sqrt(4))^2 + 0
    assert metrics.fid_from_features(x, y) == pytest.approx(expected, rel=0.01)


def test_frechet_distance_is_finite_for_singular_covariances():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(10, 64)), rng.normal(size=(10, 64)) + 1.0  # N < D: rank 9
    fid = metrics.fid_from_features(x, y)
    assert np.isfinite(fid) and fid > 0
    # Square roots of round-off-sized eigenvalues leave an error of ~1e-7 of the total variance.
    assert abs(metrics.fid_from_features(x, x)) < 1e-6 * np.trace(np.cov(x, rowvar=False))


def test_inception_score_of_uniform_predictions_is_one():
    mean, std = metrics.inception_score(np.zeros((100, 1008)))
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_confident_evenly_spread_predictions_is_num_classes():
    k = 10
    logits = 100.0 * np.eye(k)[np.arange(1000) % k]  # each split holds every class equally
    mean, std = metrics.inception_score(logits, num_splits=10)
    assert mean == pytest.approx(k, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_of_confident_single_class_is_one():
    logits = 100.0 * np.eye(10)[np.zeros(100, int)]
    assert metrics.inception_score(logits)[0] == pytest.approx(1.0, rel=1e-9)


def test_inception_score_uses_consecutive_splits():
    # First half all class 0, second half all class 1: with 2 splits every split has IS 1;
    # a shuffled split would give ~2.
    logits = 100.0 * np.eye(2)[np.repeat([0, 1], 50)]
    assert metrics.inception_score(logits, num_splits=2)[0] == pytest.approx(1.0, rel=1e-9)
    assert metrics.inception_score(logits, num_splits=1)[0] == pytest.approx(2.0, rel=1e-9)


def test_mmd2_unbiased_matches_its_definition():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3)) + 0.5

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(6), 2)) / (6 * 5)
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(5), 2)) / (5 * 4)
    xy = sum(k(a, b) for a in x for b in y) / (6 * 5)
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    same_mean, same_std = metrics.kernel_inception_distance(x, y, num_subsets=20, subset_size=500)
    assert abs(same_mean) < 3 * same_std + 1e-3
    shifted_mean, _ = metrics.kernel_inception_distance(x, y + 1.0, num_subsets=20, subset_size=500)
    assert shifted_mean > 0.1 and shifted_mean > 10 * abs(same_mean)


def _brute_force_precision_recall(real, fake, k):
    def radii(points):
        d = np.linalg.norm(points[:, None] - points[None], axis=-1)
        return np.sort(d, axis=1)[:, k]

    def coverage(queries, centres, r):
        d = np.linalg.norm(queries[:, None] - centres[None], axis=-1)
        return np.mean(np.any(d <= r[None], axis=1))

    return coverage(fake, real, radii(real)), coverage(real, fake, radii(fake))


def test_precision_recall_of_identical_and_disjoint_sets():
    real = np.random.default_rng(7).normal(size=(200, 8))
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    assert metrics.precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_precision_counts_fakes_inside_the_real_manifold():
    real = np.random.default_rng(8).normal(size=(100, 8))
    fake = np.concatenate([real[:50], real[50:] + 100.0])
    assert metrics.precision_recall(real, fake)[0] == 0.5


def test_precision_recall_matches_brute_force_with_blocks():
    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(70, 5)), rng.normal(size=(45, 5)) * 1.5 + 0.3
    expected = _brute_force_precision_recall(real, fake, k=3)
    got = metrics.precision_recall(real, fake, k=3, block_size=16)
    assert got == pytest.approx(expected, abs=1e-9)
    assert 0.0 < got[0] < 1.0 and 0.0 < got[1] < 1.0


def test_sample_quality_metrics_of_the_reference_itself():
    rng = np.random.default_rng(10)
    features = rng.normal(size=(300, 8))
    logits = 50.0 * np.eye(10)[np.arange(300) % 10]
    mu, sigma = metrics.gaussian_statistics(features)
    result = metrics.sample_quality_metrics(
        features, logits, mu, sigma, features, kid_subsets=5, kid_subset_size=100
    )
    assert set(result) == {"fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall"}
    assert abs(result["fid"]) < 1e-8
    assert result["precision"] == result["recall"] == 1.0
    assert result["is_mean"] == pytest.approx(10.0, rel=1e-6)


def test_classification_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    assert metrics.classification_accuracy(logits, np.array([0, 1, 1, 1])) == 0.75
