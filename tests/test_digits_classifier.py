"""The digits classifier (data-specific feature space) and reference statistics on the digits."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from gencore import data, digits_classifier, feature_extractors, metrics, reference_stats

TRAIN_EPOCHS = 10  # the CLI's default is 20 (99%+); 10 keeps the test short and gives ~98%


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """Trained once through `load_or_train`'s train-and-cache path."""
    path = tmp_path_factory.mktemp("cache") / "digits_classifier.npz"
    quick = functools.partial(digits_classifier.train_digits_classifier, epochs=TRAIN_EPOCHS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digits_classifier, "train_digits_classifier", quick)
        extractor = digits_classifier.load_or_train(path)
    return extractor, path


def test_classifier_reaches_high_held_out_accuracy(classifier):
    extractor, path = classifier
    assert path.is_file()
    assert extractor.info["test_accuracy"] >= 0.95
    assert extractor.data_specific and isinstance(extractor, feature_extractors.FeatureExtractor)


def test_cached_classifier_reloads_with_identical_outputs(classifier):
    extractor, path = classifier
    reloaded = feature_extractors.create_feature_extractor(
        "digits_classifier", digits_classifier_path=path
    )
    assert reloaded.info["test_accuracy"] == extractor.info["test_accuracy"]
    images, _ = digits_classifier.load_digits_images()
    features, logits = extractor.features(images[:8])
    assert features.shape == (8, digits_classifier.FEATURE_DIM) and logits.shape == (8, 10)
    np.testing.assert_array_equal(reloaded.features(images[:8])[1], logits)


def test_missing_classifier_is_not_trained_when_not_asked(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m gencore.digits_classifier"):
        digits_classifier.load_or_train(tmp_path / "none.npz", train_if_missing=False)


def test_default_cache_path_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(digits_classifier.CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert digits_classifier.default_cache_path().is_relative_to(tmp_path)
    monkeypatch.setenv(digits_classifier.CACHE_ENV_VAR, str(tmp_path / "x.npz"))
    assert digits_classifier.default_cache_path() == tmp_path / "x.npz"


def test_reference_stats_of_the_digits_and_the_metrics_they_give(classifier, tmp_path):
    extractor, _ = classifier
    config = data.default_data_config()
    config.random_flip = True  # the reference pipeline must switch flips off
    path = tmp_path / "ref.npz"
    stats = reference_stats.load_or_compute_reference_stats(
        config, extractor, "train", path=path, batch_size=500
    )
    assert stats.num_examples == 1797 and stats.split == "train"
    assert "split 'train'" in stats.describe() and "digits_classifier" in stats.describe()
    # Every image exactly once, unflipped: the same statistics as all the digits.
    images, labels = digits_classifier.load_digits_images()
    everything = feature_extractors.extract_features(
        extractor, [{"image": images, "label": labels}]
    )
    mu, sigma = metrics.gaussian_statistics(everything.features)
    np.testing.assert_allclose(stats.mu, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.sigma, sigma, rtol=1e-4, atol=1e-6)
    assert metrics.classification_accuracy(everything.logits, everything.labels) >= 0.97

    loaded = reference_stats.ReferenceStats.load(path)
    np.testing.assert_array_equal(loaded.features, stats.features)
    assert (loaded.split, loaded.extractor, loaded.resolution) == ("train", extractor.name, 32)
    with pytest.raises(ValueError, match="not of split 'validation'"):
        reference_stats.load_or_compute_reference_stats(config, extractor, "validation", path=path)

    # Real halves are close; noise and a blurred / shifted version of the data are far.
    half = len(images) // 2
    real_half = extractor.features(images[:half])[0]
    noise = np.random.default_rng(0).uniform(-1, 1, size=images[:half].shape).astype(np.float32)
    fid_real = metrics.frechet_distance(
        *metrics.gaussian_statistics(real_half), stats.mu, stats.sigma
    )
    fid_noise = metrics.frechet_distance(
        *metrics.gaussian_statistics(extractor.features(noise)[0]), stats.mu, stats.sigma
    )
    shifted = jnp.roll(images[:half], 6, axis=2)
    fid_shifted = metrics.frechet_distance(
        *metrics.gaussian_statistics(extractor.features(shifted)[0]), stats.mu, stats.sigma
    )
    assert fid_real * 10 < fid_shifted < fid_noise
