"""Tests for gencore/data.py's tensorflow-datasets source (the `[tfds]` extra; skipped without
it), and that the TensorFlow-free folder preprocessing matches the TensorFlow one."""

import numpy as np
import pytest
from data_helpers import assert_resumes_exactly, data_config, not_found_message, take

from gencore import data

pytest.importorskip('tensorflow_datasets')
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


@pytest.mark.parametrize('name, resolution, num_classes', [
    ('cifar10', 32, 10), ('imagenet2012', 24, 1000), ('lsun/church_outdoor', 16, 1),
    ('downsampled_imagenet/64x64', 64, 1)])   # no label; its Image feature has no fixed shape,
    # so the mock draws other sizes than the real 64x64
def test_mocked_tfds_datasets_preprocess_and_resume_exactly(name, resolution, num_classes):
    config = data_config(name=name, resolution=resolution, shuffle_buffer=8)
    with tfds.testing.mock_data(num_examples=20):
        full = assert_resumes_exactly(config, batch=8, start=4, count=3)  # epoch 1 -> 2
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
    config = data_config(name='tiny_labelled_images', data_dir=tiny_tfds_dir, resolution=6,
                     shuffle_buffer=4)
    epochs = []
    for p in range(2):
        pipeline = data.create_input_pipeline(config, global_batch_size=8, seed=0,
                                              process_index=p, process_count=2)
        assert pipeline.num_examples == 40 and pipeline.local_batch_size == 4
        ids = np.concatenate([_tiny_ids(b) for b in take(pipeline, 10)])  # two epochs of 20
        assert sorted(ids[:20]) == sorted(ids[20:]) and len(set(ids[:20])) == 20
        assert not np.array_equal(ids[:20], ids[20:])  # reshuffled each epoch
        epochs.append(set(ids[:20]))
    assert epochs[0].isdisjoint(epochs[1]) and epochs[0] | epochs[1] == set(range(40))
    assert_resumes_exactly(config, batch=16, start=2, count=3)


def test_tfds_train_fraction_uses_the_first_examples(tiny_tfds_dir):
    config = data_config(name='tiny_labelled_images', data_dir=tiny_tfds_dir, train_fraction=0.25)
    pipeline = data.create_input_pipeline(config, global_batch_size=10, seed=0, process_count=1)
    assert pipeline.num_examples == 10
    ids = _tiny_ids(next(pipeline))
    reference = tfds.builder('tiny_labelled_images', data_dir=tiny_tfds_dir).as_dataset(
        split='train[:10]')
    assert set(ids) == {int(ex['image'][0, 0, 0]) // 5 for ex in reference}


@pytest.mark.parametrize('fields, message', [
    ({'name': 'tiny_labelled_images', 'data_dir': '/no/such/dir'}, "'/no/such/dir' does not"),
    ({'name': 'tiny_labelled_images', 'data_dir': '{empty}'}, 'tfds build tiny_labelled_images'),
    ({'name': 'imagenet2012', 'data_dir': '{empty}'}, 'ILSVRC2012_img_train.tar'),
])
def test_missing_tfds_data_gives_one_clear_error(tmp_path, fields, message):
    error = not_found_message(fields, tmp_path)
    assert message in error
    if fields['name'] == 'imagenet2012':
        assert f'--manual_dir=<manual_dir> --data_dir={tmp_path}' in error


def test_unknown_dataset_lists_the_supported_sources():
    with pytest.raises(ValueError, match="Unknown dataset data.name='no_such_dataset'") as error:
        data.create_input_pipeline(data_config(name='no_such_dataset'), global_batch_size=4,
                                   seed=0, process_count=1)
    assert "'digits'" in str(error.value) and "'folder'" in str(error.value)


def test_unknown_tfds_split_is_named(tiny_tfds_dir):
    config = data_config(name='tiny_labelled_images', data_dir=tiny_tfds_dir, split='validation')
    with pytest.raises(ValueError, match="data.split='validation'"):
        data.create_input_pipeline(config, global_batch_size=4, seed=0, process_count=1)


@pytest.mark.parametrize('shape, resolution', [((37, 53, 3), 16), ((20, 20, 3), 20),
                                               ((12, 9, 3), 24), ((64, 48, 3), 7)])
def test_folder_preprocessing_matches_the_tensorflow_pipeline(shape, resolution):
    """PIL decode + numpy area resize equal tf.io.decode_image + tf.image.resize('area'),
    which read folder images before TensorFlow became optional (PNG: lossless, so exact up to
    float rounding)."""
    import io

    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, 'PNG')
    ours = data.preprocess_image(png.getvalue(), resolution)
    theirs = data._preprocess(png.getvalue(), resolution).numpy()
    assert ours.shape == theirs.shape == (resolution, resolution, 3)
    np.testing.assert_allclose(ours, theirs, atol=2e-6)
