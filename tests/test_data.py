"""Tests for common/data.py: sources, preprocessing, exact resume, per-process sharding, errors."""

import numpy as np
import pytest
from PIL import Image

from common import data

data.input_tensorflow()  # before tensorflow_datasets imports TensorFlow with its default logging
import tensorflow_datasets as tfds  # noqa: E402


class TinyLabelledImages(tfds.core.GeneratorBasedBuilder):
    """40 constant-colour images of varying sizes; example i has value 5 * i and label i % 3."""

    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'label': tfds.features.ClassLabel(num_classes=3)}))

    def _split_generators(self, dl_manager):
        return {'train': self._generate_examples()}

    def _generate_examples(self):
        for i in range(40):
            yield i, {'image': np.full((10 + i % 5, 14, 3), 5 * i, np.uint8), 'label': i % 3}


def _config(**fields):
    config = data.default_data_config()
    config.update(fields)
    return config


def _take(pipeline, count):
    return [next(pipeline) for _ in range(count)]


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x['image'], y['image'])
        np.testing.assert_array_equal(x['label'], y['label'])


def _assert_resumes_exactly(config, batch, start, count=4):
    full = _take(data.create_input_pipeline(config, global_batch_size=batch, seed=3,
                                            process_count=1, process_index=0), start + count)
    resumed = data.create_input_pipeline(config, global_batch_size=batch, seed=3,
                                         start_batch=start, process_count=1, process_index=0)
    assert resumed.next_batch == start
    _assert_same_batches(full[start:], _take(resumed, count))
    return full


def _tiny_ids(batch):
    """Example ids of TinyLabelledImages batches (constant images of value 5 * id)."""
    values = (batch['image'] + 1.0) * 127.5
    np.testing.assert_allclose(values, values[:, :1, :1, :1] * np.ones_like(values), atol=1e-3)
    ids = np.round(values[:, 0, 0, 0] / 5).astype(int)
    np.testing.assert_array_equal(batch['label'], ids % 3)
    return ids


@pytest.fixture(scope='module')
def tiny_tfds_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('tfds'))
    tfds.disable_progress_bar()
    tfds.builder('tiny_labelled_images', data_dir=root).download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=4))
    return root


def test_digits_shapes_range_and_one_epoch_is_the_whole_dataset():
    pipeline = data.create_input_pipeline(_config(), global_batch_size=599, seed=0,
                                          process_count=1)
    assert (pipeline.num_classes, pipeline.num_examples) == (10, 1797)
    assert pipeline.image_shape == (32, 32, 3)
    epoch = _take(pipeline, 3)  # 3 x 599 = 1797 examples: exactly one permutation
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
    config = _config(resolution=16, train_fraction=0.1)
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
    config = _config(random_flip=True)
    full = _assert_resumes_exactly(config, batch=64, start=26, count=5)  # epoch ends in batch 28
    unflipped = _take(data.create_input_pipeline(_config(), global_batch_size=64, seed=3,
                                                 process_count=1), 2)
    for flipped, plain in zip(full[:2], unflipped, strict=True):
        same = np.all(flipped['image'] == plain['image'], axis=(1, 2, 3))
        mirrored = np.all(flipped['image'] == plain['image'][:, :, ::-1], axis=(1, 2, 3))
        assert np.all(same | mirrored) and 0 < same.sum() < 64


def test_digits_processes_split_the_global_batch():
    whole = _take(data.create_input_pipeline(_config(), global_batch_size=64, seed=5,
                                             start_batch=27, process_count=1), 3)
    parts = [_take(data.create_input_pipeline(_config(), global_batch_size=64, seed=5,
                                              start_batch=27, process_index=p, process_count=2),
                   3) for p in range(2)]
    for n in range(3):
        assert parts[0][n]['image'].shape == (32, 32, 32, 3)
        np.testing.assert_array_equal(
            np.concatenate([parts[0][n]['image'], parts[1][n]['image']]), whole[n]['image'])
        np.testing.assert_array_equal(
            np.concatenate([parts[0][n]['label'], parts[1][n]['label']]), whole[n]['label'])


@pytest.mark.parametrize('name, resolution, num_classes', [
    ('cifar10', 32, 10), ('imagenet2012', 24, 1000), ('lsun/church_outdoor', 16, 1)])
def test_mocked_tfds_datasets_preprocess_and_resume_exactly(name, resolution, num_classes):
    config = _config(name=name, resolution=resolution, shuffle_buffer=8)
    with tfds.testing.mock_data(num_examples=20):
        full = _assert_resumes_exactly(config, batch=8, start=4, count=3)  # epoch 1 -> 2
        pipeline = data.create_input_pipeline(config, global_batch_size=8, seed=3,
                                              process_count=1)
    assert (pipeline.num_examples, pipeline.num_classes) == (20, num_classes)
    images = np.stack([b['image'] for b in full])
    labels = np.stack([b['label'] for b in full])
    assert images.shape == (7, 8, resolution, resolution, 3) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0.1
    assert labels.min() >= 0 and labels.max() < num_classes
    if name == 'cifar10':  # native size: area resampling is the identity, pixels stay on 8 bits
        pixels = (images + 1.0) * 127.5
        np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
    if num_classes == 1:
        assert not labels.any()


def test_tfds_processes_read_disjoint_shares_and_resume(tiny_tfds_dir):
    config = _config(name='tiny_labelled_images', data_dir=tiny_tfds_dir, resolution=6,
                     shuffle_buffer=4)
    epochs = []
    for p in range(2):
        pipeline = data.create_input_pipeline(config, global_batch_size=8, seed=0,
                                              process_index=p, process_count=2)
        assert pipeline.num_examples == 40 and pipeline.local_batch_size == 4
        ids = np.concatenate([_tiny_ids(b) for b in _take(pipeline, 10)])  # two epochs of 20
        assert sorted(ids[:20]) == sorted(ids[20:]) and len(set(ids[:20])) == 20
        assert not np.array_equal(ids[:20], ids[20:])  # reshuffled each epoch
        epochs.append(set(ids[:20]))
    assert epochs[0].isdisjoint(epochs[1]) and epochs[0] | epochs[1] == set(range(40))
    _assert_resumes_exactly(config, batch=16, start=2, count=3)


def test_tfds_train_fraction_uses_the_first_examples(tiny_tfds_dir):
    config = _config(name='tiny_labelled_images', data_dir=tiny_tfds_dir, train_fraction=0.25)
    pipeline = data.create_input_pipeline(config, global_batch_size=10, seed=0, process_count=1)
    assert pipeline.num_examples == 10
    ids = _tiny_ids(next(pipeline))
    reference = tfds.builder('tiny_labelled_images', data_dir=tiny_tfds_dir).as_dataset(
        split='train[:10]')
    assert set(ids) == {int(ex['image'][0, 0, 0]) // 5 for ex in reference}


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
    config = _config(name='folder', data_dir=str(tmp_path), resolution=8)
    full = _assert_resumes_exactly(config, batch=4, start=3, count=2)
    images = np.concatenate([b['image'] for b in full])
    labels = np.concatenate([b['label'] for b in full])
    assert images.shape == (20, 8, 8, 3)
    colours = {0: (-1.0, -1.0, 1.0), 1: (-1.0, 1.0, -1.0)}  # apple: blue only, zebra: green
    expected = np.array([colours[int(label)] for label in labels])[:, None, None, :]
    np.testing.assert_allclose(images, np.broadcast_to(expected, images.shape), atol=0.05)
    pipeline = data.create_input_pipeline(config, global_batch_size=4, seed=0, process_count=1)
    assert (pipeline.num_classes, pipeline.num_examples) == (2, 5)

    flat = tmp_path / 'zebra'
    pipeline = data.create_input_pipeline(_config(name='folder', data_dir=str(flat)),
                                          global_batch_size=2, seed=0, process_count=1)
    assert (pipeline.num_classes, pipeline.num_examples) == (1, 2)


@pytest.mark.parametrize('fields, message', [
    ({'name': 'folder', 'data_dir': '/no/such/dir'}, "'/no/such/dir' is not a directory"),
    ({'name': 'folder', 'data_dir': '{empty}'}, 'no .png/.jpg/.jpeg images'),
    ({'name': 'tiny_labelled_images', 'data_dir': '/no/such/dir'}, "'/no/such/dir' does not"),
    ({'name': 'tiny_labelled_images', 'data_dir': '{empty}'}, 'tfds build tiny_labelled_images'),
    ({'name': 'imagenet2012', 'data_dir': '{empty}'}, 'ILSVRC2012_img_train.tar'),
])
def test_missing_data_gives_one_clear_error(tmp_path, fields, message):
    fields = {k: v.format(empty=tmp_path) for k, v in fields.items()}
    with pytest.raises(data.DatasetNotFoundError, match='data') as error:
        data.create_input_pipeline(_config(**fields), global_batch_size=4, seed=0,
                                   process_count=1)
    assert message in str(error.value)
    if fields['name'] == 'imagenet2012':
        assert f'--manual_dir=<manual_dir> --data_dir={tmp_path}' in str(error.value)


@pytest.mark.parametrize('fields, batch, message', [
    ({'name': 'no_such_dataset'}, 4, "Unknown dataset data.name='no_such_dataset'"),
    ({}, 10, 'train.batch_size'),
    ({'train_fraction': 0.0}, 4, 'data.train_fraction'),
    ({'split': 'test'}, 4, 'data.split'),
])
def test_bad_fields_are_named(fields, batch, message):
    with pytest.raises(ValueError, match=message) as error:
        data.create_input_pipeline(_config(**fields), global_batch_size=batch, seed=0,
                                   process_count=3 if batch == 10 else 1)
    assert not isinstance(error.value, data.DatasetNotFoundError)
    if 'name' in fields:
        assert "'digits'" in str(error.value) and "'folder'" in str(error.value)


def test_train_fraction_of_a_sliced_split_is_refused():
    """'train[:50%]' with train_fraction would otherwise become the invalid 'train[:50%][:N]'."""
    config = _config(name='cifar10', split='train[:50%]', train_fraction=0.5)
    with pytest.raises(ValueError, match=r"train_fraction=0.5 .*split='train\[:50%\]'"):
        data.create_input_pipeline(config, global_batch_size=4, seed=0, process_count=1)


def test_unknown_tfds_split_is_named(tiny_tfds_dir):
    config = _config(name='tiny_labelled_images', data_dir=tiny_tfds_dir, split='validation')
    with pytest.raises(ValueError, match="data.split='validation'"):
        data.create_input_pipeline(config, global_batch_size=4, seed=0, process_count=1)
