"""Tests for gencore/data.py without TensorFlow: the digits and folder sources, preprocessing,
exact resume, per-process sharding, errors (tfds datasets: test_data_tfds.py)."""

import numpy as np
import pytest
from data_helpers import (
    assert_resumes_exactly,
    assert_same_batches,
    data_config,
    not_found_message,
    take,
)
from PIL import Image

from gencore import data


def test_digits_shapes_range_and_one_epoch_is_the_whole_dataset():
    pipeline = data.create_input_pipeline(data_config(), global_batch_size=599, seed=0,
                                          process_count=1)
    assert (pipeline.num_classes, pipeline.num_examples) == (10, 1797)
    assert pipeline.image_shape == (32, 32, 3)
    epoch = take(pipeline, 3)  # 3 x 599 = 1797 examples: exactly one permutation
    images = np.concatenate([b['image'] for b in epoch])
    labels = np.concatenate([b['label'] for b in epoch])
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert images.shape == (1797, 32, 32, 3)
    assert images.min() == -1.0 and images.max() > 0.99 and images.max() <= 1.0
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey replicated to RGB
    np.testing.assert_array_equal(
        np.bincount(labels), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert len(set(labels[:50])) == 10  # shuffled, not in dataset order


def test_digits_resolution_and_fraction_subset_is_seed_independent():
    config = data_config(resolution=16, train_fraction=0.1)
    epochs = []
    for seed in (0, 1):
        pipeline = data.create_input_pipeline(config, global_batch_size=180, seed=seed,
                                              process_count=1)
        assert pipeline.num_examples == 180
        batch = next(pipeline)
        assert batch['image'].shape == (180, 16, 16, 3)
        flat = batch['image'].reshape(180, -1)
        epochs.append((flat, flat[np.lexsort(flat.T)]))
    assert not np.array_equal(epochs[0][0], epochs[1][0])  # different order
    np.testing.assert_array_equal(epochs[0][1], epochs[1][1])  # same subset


def test_digits_resume_with_flips_is_exact_across_epochs():
    config = data_config(random_flip=True)
    full = assert_resumes_exactly(config, batch=64, start=26, count=5)  # epoch ends in batch 28
    unflipped = take(data.create_input_pipeline(data_config(), global_batch_size=64, seed=3,
                                                 process_count=1), 2)
    for flipped, plain in zip(full[:2], unflipped, strict=True):
        same = np.all(flipped['image'] == plain['image'], axis=(1, 2, 3))
        mirrored = np.all(flipped['image'] == plain['image'][:, :, ::-1], axis=(1, 2, 3))
        assert np.all(same | mirrored) and 0 < same.sum() < 64
    overridden = take(data.create_input_pipeline(config, global_batch_size=64, seed=3,
                                                 process_count=1, random_flip=False), 2)
    assert_same_batches(overridden, unflipped)   # the argument turns the config's flips off


def test_digits_processes_split_the_global_batch():
    whole = take(data.create_input_pipeline(data_config(), global_batch_size=64, seed=5,
                                             start_batch=27, process_count=1), 3)
    parts = [take(data.create_input_pipeline(data_config(), global_batch_size=64, seed=5,
                                              start_batch=27, process_index=p, process_count=2),
                   3) for p in range(2)]
    for n in range(3):
        assert parts[0][n]['image'].shape == (32, 32, 32, 3)
        np.testing.assert_array_equal(
            np.concatenate([parts[0][n]['image'], parts[1][n]['image']]), whole[n]['image'])
        np.testing.assert_array_equal(
            np.concatenate([parts[0][n]['label'], parts[1][n]['label']]), whole[n]['label'])


def _write_image(path, array):
    Image.fromarray(array.astype(np.uint8)).save(path)


def test_image_folder_labels_crop_and_resume(tmp_path):
    blue_in_red = np.zeros((20, 40, 3))
    blue_in_red[:, :, 0] = 255
    blue_in_red[:, 10:30] = (0, 0, 255)  # the centre square of the wide image
    (tmp_path / 'zebra').mkdir()
    (tmp_path / 'apple').mkdir()
    for i in range(3):
        _write_image(tmp_path / 'apple' / f'{i}.png', blue_in_red)
    for i in range(2):
        _write_image(tmp_path / 'zebra' / f'{i}.jpg', np.full((30, 17, 3), (0, 255, 0)))
    (tmp_path / 'zebra' / 'notes.txt').write_text('not an image')
    config = data_config(name='folder', data_dir=str(tmp_path), resolution=8)
    full = assert_resumes_exactly(config, batch=4, start=3, count=2)
    images = np.concatenate([b['image'] for b in full])
    labels = np.concatenate([b['label'] for b in full])
    assert images.shape == (20, 8, 8, 3)
    colours = {0: (-1.0, -1.0, 1.0), 1: (-1.0, 1.0, -1.0)}  # apple: blue only, zebra: green
    expected = np.array([colours[int(label)] for label in labels])[:, None, None, :]
    np.testing.assert_allclose(images, np.broadcast_to(expected, images.shape), atol=0.05)
    pipeline = data.create_input_pipeline(config, global_batch_size=4, seed=0, process_count=1)
    assert (pipeline.num_classes, pipeline.num_examples) == (2, 5)

    flat = tmp_path / 'zebra'
    pipeline = data.create_input_pipeline(data_config(name='folder', data_dir=str(flat)),
                                          global_batch_size=2, seed=0, process_count=1)
    assert (pipeline.num_classes, pipeline.num_examples) == (1, 2)


@pytest.mark.parametrize('fields, message', [
    ({'name': 'folder', 'data_dir': '/no/such/dir'}, "'/no/such/dir' is not a directory"),
    ({'name': 'folder', 'data_dir': '{empty}'}, 'no .png/.jpg/.jpeg images'),
])
def test_missing_data_gives_one_clear_error(tmp_path, fields, message):
    assert message in not_found_message(fields, tmp_path)


@pytest.mark.parametrize('fields, batch, message', [
    ({}, 10, 'train.batch_size'),
    ({'train_fraction': 0.0}, 4, 'data.train_fraction'),
    ({'split': 'test'}, 4, 'data.split'),
])
def test_bad_fields_are_named(fields, batch, message):
    with pytest.raises(ValueError, match=message) as error:
        data.create_input_pipeline(data_config(**fields), global_batch_size=batch, seed=0,
                                   process_count=3 if batch == 10 else 1)
    assert not isinstance(error.value, data.DatasetNotFoundError)


def test_train_fraction_of_a_sliced_split_is_refused():
    """'train[:50%]' with train_fraction would otherwise become the invalid 'train[:50%][:N]'."""
    config = data_config(name='cifar10', split='train[:50%]', train_fraction=0.5)
    with pytest.raises(ValueError, match=r"train_fraction=0.5 .*split='train\[:50%\]'"):
        data.create_input_pipeline(config, global_batch_size=4, seed=0, process_count=1)




def test_area_resize_weights_average_overlaps():
    np.testing.assert_array_equal(data.area_resize_weights(5, 5), np.eye(5))
    np.testing.assert_allclose(data.area_resize_weights(4, 2), [[.5, .5, 0, 0], [0, 0, .5, .5]])
    weights = data.area_resize_weights(3, 2)   # output pixels cover [0, 1.5) and [1.5, 3)
    np.testing.assert_allclose(weights, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(data.area_resize_weights(37, 16).sum(axis=1), 1.0)


def test_tfds_dataset_without_the_extra_names_the_install(monkeypatch):
    real_find_spec = data.importlib.util.find_spec
    monkeypatch.setattr(data.importlib.util, 'find_spec',
                        lambda name, *a: None if name.startswith('tensorflow') else
                        real_find_spec(name, *a))
    with pytest.raises(data.MissingExtraError) as error:
        data.create_input_pipeline(data_config(name='cifar10'), global_batch_size=4, seed=0,
                                   process_count=1)
    assert "data.name='cifar10'" in str(error.value)
    assert "pip install -e '.[tfds]'" in str(error.value)
