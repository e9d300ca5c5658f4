"""Image input pipelines whose batch stream can be resumed exactly, with no saved iterator state.

`create_input_pipeline(config.data, global_batch_size=..., seed=..., start_batch=n)` returns an
iterator of `{'image': float32 [B_local, H, W, 3] in [-1, 1], 'label': int32 [B_local]}`, where
`B_local = global_batch_size // process_count`. The stream is a pure function of (data config,
seed, global batch size, process index and count), and `start_batch=n` yields exactly the batches
n, n+1, ... an uninterrupted run yields, without decoding the skipped ones. A training loop passes
the number of batches it has already consumed, so a checkpoint needs no iterator state.

Data config fields (`default_data_config()`):
  name: 'digits' (embedded: scikit-learn's 1797 real 8x8 digit images, 10 classes, bicubic
    upsampling to `resolution`, no download); 'folder' (`data_dir/<class>/*.png|jpg`, sorted class
    names give label ids; images directly in `data_dir` form one class); or a tfds image dataset
    name such as 'cifar10', 'imagenet2012', 'celeb_a_hq/128', 'lsun/church_outdoor',
    'downsampled_imagenet/64x64' (the 'label' ClassLabel feature if there is one, otherwise
    label 0 and one class).
  data_dir: tfds data_dir (None: the tfds default) or the image folder's root.
  resolution: output height and width.
  split: tfds split ('train', 'validation', 'train[:50%]', ...); digits and folder have 'train'
    and 'heldout' (the examples that train_fraction leaves out, e.g. for D's memorization test).
  random_flip: horizontal flips, drawn from (seed, batch index, slot in the global batch).
  train_fraction: use only a fixed subset of this fraction of the split, the same for every seed:
    the first examples of the tfds split (tfds shuffles at build time), or a fixed random subset of
    the digits / folder images.
  shuffle_buffer: tf.data shuffle buffer (encoded records) for tfds datasets.

tfds datasets need the `[tfds]` extra (TensorFlow and tensorflow-datasets); digits and folder
need neither (folder images are read with etils.epath, local or gs://, and decoded with PIL).

Preprocessing of tfds and folder images (BigGAN paper, Section 3): centre crop to the square of
the short side, resize to `resolution` with area resampling (exact identity at native size),
scale to [-1, 1].

Batch order:
  - digits and folder (index-based): position k of the global stream holds example
    perm_e[k mod N] with e = k // N and perm_e a permutation drawn from (seed, e); global batch n
    is positions [nG, (n+1)G) and process p takes the p-th contiguous slice of it, so P processes
    together see exactly the 1-process batch. Resuming costs one permutation, not a replay.
  - tfds (streaming): process p reads its own `tfds.even_splits` share of the split, E examples;
    its epoch e is that share with files shuffled and then a shuffle buffer, both seeded by
    (seed, p, P, e) and read with deterministic tf.data options. Batch n is local positions
    [nB, (n+1)B); resuming opens epoch nB // E and skips the first nB mod E encoded records
    (read, not decoded). With P > 1 the batches differ from the 1-process ones (each process
    reads only its share, as at pod scale) but are disjoint across processes.
With one process, the first `num_examples` examples of the stream hold every example once (e.g.
for reference statistics: take ceil(num_examples / B) batches and drop the surplus).
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import importlib.util
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np
from etils import epath
from ml_collections import config_dict

_DEFAULTS: dict[str, Any] = {
    'name': 'digits',
    'data_dir': None,
    'resolution': 32,
    'split': 'train',
    'random_flip': False,
    'train_fraction': 1.0,
    'shuffle_buffer': 10_000,
}
_IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
HELDOUT_SPLIT = 'heldout'
# Independent random streams derived from the training seed.
_ORDER_STREAM, _FLIP_STREAM, _TFDS_STREAM, _SUBSET_STREAM = range(4)
_SUPPORTED = (
    "'digits' (embedded scikit-learn 8x8 digits, no download), 'folder' (data_dir=<root> with "
    "<root>/<class>/*.png|jpg), or a tensorflow-datasets image dataset name such as 'cifar10', "
    "'imagenet2012', 'celeb_a_hq/128', 'lsun/church_outdoor' (optionally 'name:version')"
)


class DatasetNotFoundError(ValueError):
    """The configured dataset is not where the config says; the message says how to prepare it."""


def default_data_config() -> ml_collections.ConfigDict:
    """The `config.data` section with every field this module reads (see module docstring)."""
    return ml_collections.ConfigDict({**_DEFAULTS, 'data_dir': config_dict.placeholder(str)})


@dataclass(frozen=True)
class _Layout:
    """How the global batch is split over processes, and the seed of the stream."""

    seed: int
    global_batch_size: int
    process_index: int
    process_count: int

    @property
    def local_batch_size(self) -> int:
        return self.global_batch_size // self.process_count

    def rng(self, *stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *stream])


class _Source(Protocol):
    num_classes: int
    num_examples: int

    def batches(self, start_batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """This process's batches n = start_batch, ...: float32 [B, H, W, 3], int labels [B]."""
        ...


class InputPipeline:
    """Iterator over this process's batches; see `create_input_pipeline`.

    Attributes: num_classes, image_shape (H, W, 3), num_examples (in the split, after
    train_fraction), global_batch_size, local_batch_size, process_index, process_count, and
    next_batch (index of the batch the next `next()` returns).
    """

    def __init__(self, source: _Source, layout: _Layout, resolution: int, random_flip: bool,
                 start_batch: int):
        self.num_classes = source.num_classes
        self.num_examples = source.num_examples
        self.image_shape = (resolution, resolution, 3)
        self.global_batch_size = layout.global_batch_size
        self.local_batch_size = layout.local_batch_size
        self.process_index = layout.process_index
        self.process_count = layout.process_count
        self.next_batch = start_batch
        self._layout = layout
        self._random_flip = random_flip
        self._batches = source.batches(start_batch)

    def __iter__(self) -> InputPipeline:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        images, labels = next(self._batches)
        if self._random_flip:
            b = self.local_batch_size
            start = self.process_index * b
            draws = self._layout.rng(_FLIP_STREAM, self.next_batch).random(self.global_batch_size)
            flip = draws[start:start + b] < 0.5
            images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
        self.next_batch += 1
        return {'image': np.asarray(images, np.float32), 'label': np.asarray(labels, np.int32)}


def create_input_pipeline(
    data_config: ml_collections.ConfigDict,
    *,
    global_batch_size: int,
    seed: int,
    split: str | None = None,
    start_batch: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    random_flip: bool | None = None,
) -> InputPipeline:
    """Builds this process's batch iterator, starting at batch `start_batch` of the stream.

    Args:
      data_config: the `config.data` section (fields in the module docstring; missing fields take
        the defaults of `default_data_config()`).
      global_batch_size: batch over all processes (`config.train.batch_size`).
      seed: seed of the example order and flips.
      split: overrides `data_config.split`.
      start_batch: number of batches already consumed; the stream continues exactly from there.
      process_index, process_count: default to `jax.process_index()` / `jax.process_count()`.
      random_flip: overrides `data_config.random_flip` (False for evaluation on unflipped
        images, e.g. held-out bits/dim).

    Raises:
      DatasetNotFoundError: the dataset is missing from `data_dir` (the message says how to
        prepare it). ValueError: unknown name or an invalid field (the message names it).
    """
    cfg = {key: getattr(data_config, key, default) for key, default in _DEFAULTS.items()}
    split = cfg['split'] if split is None else split
    random_flip = cfg['random_flip'] if random_flip is None else random_flip
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(
            f'train.batch_size (the global batch) = {global_batch_size} must be a positive '
            f'multiple of the process count {process_count}.')
    if not 0 <= process_index < process_count:
        raise ValueError(f'process_index {process_index} is not in [0, {process_count}).')
    if start_batch < 0:
        raise ValueError(f'start_batch must be >= 0, got {start_batch}.')
    if cfg['resolution'] <= 0:
        raise ValueError(f"data.resolution must be positive, got {cfg['resolution']}.")
    if not 0.0 < cfg['train_fraction'] <= 1.0:
        raise ValueError(f"data.train_fraction must be in (0, 1], got {cfg['train_fraction']}.")
    layout = _Layout(int(seed) % 2**64, global_batch_size, process_index, process_count)

    name = cfg['name']
    if name in ('digits', 'folder'):
        if split not in ('train', HELDOUT_SPLIT):
            raise ValueError(f"data.split={split!r}: the '{name}' dataset has 'train' and "
                             f"'{HELDOUT_SPLIT}' (the examples data.train_fraction leaves out).")
        subset = (cfg['train_fraction'], split == HELDOUT_SPLIT)
        if name == 'digits':
            source = _digits_source(cfg['resolution'], subset, layout)
        else:
            source = _folder_source(cfg['data_dir'], cfg['resolution'], subset, layout)
    else:
        if cfg['train_fraction'] < 1.0 and '[' in split:
            raise ValueError(
                f"data.train_fraction={cfg['train_fraction']} takes the first share of "
                f"data.split={split!r}, which is already a slice; use one of the two: "
                f"data.split='train' with train_fraction, or the sliced split with "
                f"train_fraction=1.0.")
        source = _TfdsSource(name, cfg['data_dir'], split, cfg['resolution'],
                             cfg['train_fraction'], cfg['shuffle_buffer'], layout)
    return InputPipeline(source, layout, cfg['resolution'], random_flip, start_batch)


# ----------------------------------------------------------------------------- index-based order

def _fixed_subset(num_examples: int, subset: tuple[float, bool]) -> np.ndarray:
    """Sorted indices of a seed-independent subset holding `fraction` of the examples, or of
    the rest when `heldout`; subset = (fraction, heldout)."""
    fraction, heldout = subset
    count = max(1, round(fraction * num_examples))
    order = np.random.default_rng([_SUBSET_STREAM]).permutation(num_examples)
    if not heldout:
        return np.sort(order[:count])
    if count == num_examples:
        raise ValueError(f"data.split='{HELDOUT_SPLIT}' is empty with data.train_fraction="
                         f"{fraction}: train on a fraction below 1 to hold images out.")
    return np.sort(order[count:])


def _example_indices(layout: _Layout, num_examples: int, first_batch: int,
                     num_batches: int) -> np.ndarray:
    """int64 [num_batches, B_local]: example ids of this process's slice of global batches."""
    b = layout.local_batch_size
    batch_ids = np.arange(first_batch, first_batch + num_batches, dtype=np.int64)
    slots = layout.process_index * b + np.arange(b, dtype=np.int64)
    epochs, offsets = np.divmod(batch_ids[:, None] * layout.global_batch_size + slots,
                                num_examples)
    indices = np.empty_like(offsets)
    for epoch in np.unique(epochs):
        in_epoch = epochs == epoch
        permutation = layout.rng(_ORDER_STREAM, int(epoch)).permutation(num_examples)
        indices[in_epoch] = permutation[offsets[in_epoch]]
    return indices


class _ArraySource:
    """Decoded images held in memory (the digits)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, layout: _Layout):
        self.images, self.labels = images, labels
        self.num_classes = num_classes
        self.num_examples = len(labels)
        self._layout = layout

    def batches(self, start_batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = start_batch
        while True:
            indices = _example_indices(self._layout, self.num_examples, n, 1)[0]
            yield self.images[indices], self.labels[indices]
            n += 1


class _FileSource:
    """Encoded image files, decoded with PIL in a thread pool, in the index-based order."""

    PREFETCH_BATCHES = 2   # decoded ahead of the one being consumed
    INDEX_WINDOW = 64      # batches whose example ids are drawn at once

    def __init__(self, paths: np.ndarray, labels: np.ndarray, num_classes: int, resolution: int,
                 layout: _Layout):
        self.paths, self.labels = paths, labels
        self.num_classes = num_classes
        self.num_examples = len(labels)
        self._resolution = resolution
        self._layout = layout

    def _load(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = [preprocess_image(epath.Path(p).read_bytes(), self._resolution)
                  for p in self.paths[indices]]
        return np.stack(images), self.labels[indices]

    def _batch_indices(self, start_batch: int) -> Iterator[np.ndarray]:
        n = start_batch
        while True:
            yield from _example_indices(self._layout, self.num_examples, n, self.INDEX_WINDOW)
            n += self.INDEX_WINDOW

    def batches(self, start_batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        threads = os.cpu_count() or 1
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            pending: collections.deque = collections.deque()
            for indices in self._batch_indices(start_batch):
                pending.append([pool.submit(self._load, part) for part in
                                np.array_split(indices, min(len(indices), threads))])
                if len(pending) > self.PREFETCH_BATCHES:
                    images, labels = zip(*(part.result() for part in pending.popleft()),
                                         strict=True)
                    yield np.concatenate(images), np.concatenate(labels)


def _digits_source(resolution: int, subset: tuple[float, bool], layout: _Layout
                   ) -> _ArraySource:
    """scikit-learn's digits (values 0..16), bicubic-resized to `resolution`, grey -> RGB."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = _fixed_subset(len(digits.target), subset)
    resized = [
        np.asarray(Image.fromarray((image / 16.0).astype(np.float32)).resize(
            (resolution, resolution), Image.Resampling.BICUBIC))
        for image in digits.images[keep]
    ]
    grey = np.clip(np.stack(resized), 0.0, 1.0) * 2.0 - 1.0
    images = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    return _ArraySource(images, digits.target[keep].astype(np.int32), 10, layout)


def _folder_source(root: str | None, resolution: int, subset: tuple[float, bool],
                   layout: _Layout) -> _FileSource:
    """`root/<class>/*.png|jpg` (sorted class names -> ids), or `root/*.png|jpg` as one class."""
    layout_help = (
        "Put one sub-folder per class under data_dir (root/<class>/*.png|jpg|jpeg; sorted class "
        "names give the label ids) or all images directly in data_dir for one class, and set "
        "--config.data.data_dir=<root>.")
    if not root or not epath.Path(root).is_dir():
        raise DatasetNotFoundError(
            f"data.name='folder': data.data_dir={root!r} is not a directory. {layout_help}")

    def images_in(directory: epath.Path) -> list[str]:
        return sorted(os.fspath(f) for f in directory.iterdir()
                      if f.name.lower().endswith(_IMAGE_SUFFIXES))

    entries = sorted((e for e in epath.Path(root).iterdir() if not e.name.startswith('.')),
                     key=lambda e: e.name)
    class_dirs = [e for e in entries if e.is_dir()]
    groups = [images_in(c) for c in class_dirs]
    groups = [g for g in groups if g] or [images_in(epath.Path(root))]
    paths = [p for group in groups for p in group]
    if not paths:
        raise DatasetNotFoundError(
            f"data.name='folder': no .png/.jpg/.jpeg images in {root!r} or its sub-folders. "
            f"{layout_help}")
    labels = np.concatenate([np.full(len(g), i, np.int32) for i, g in enumerate(groups)])
    keep = _fixed_subset(len(paths), subset)
    return _FileSource(np.asarray(paths)[keep], labels[keep], len(groups), resolution, layout)


def area_resize_weights(size: int, out: int) -> np.ndarray:
    """float64 [out, size]: area resampling along one axis. Output pixel i is the mean of the
    input over [i s, (i + 1) s), s = size / out, each input pixel weighted by its overlap."""
    scale = size / out
    edges = np.arange(out + 1) * scale
    pixels = np.arange(size)[None, :]
    overlap = (np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels))
    return np.clip(overlap, 0.0, None) / scale


def preprocess_image(encoded: bytes, resolution: int) -> np.ndarray:
    """Encoded PNG/JPEG -> float32 [R, R, 3] in [-1, 1]: centre square crop of the short side,
    area resize (the identity at native size), scale to [-1, 1]."""
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        pixels = np.asarray(image.convert('RGB'), np.float64)
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    pixels = pixels[top:top + side, left:left + side]
    weights = area_resize_weights(side, resolution)
    resized = np.einsum('ih,hwc,jw->ijc', weights, pixels, weights)
    return np.clip(resized / 127.5 - 1.0, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- tensorflow parts

TFDS_EXTRA = "pip install -e '.[tfds]'"


class MissingExtraError(ValueError):
    """A dataset needs a package of an optional extra that is not installed."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def check_tfds_installed(name: str) -> None:
    """Raises MissingExtraError unless tensorflow and tensorflow-datasets can be imported."""
    missing = [m for m in ('tensorflow', 'tensorflow_datasets') if not _installed(m)]
    if missing:
        raise MissingExtraError(
            f"data.name={name!r} is a tensorflow-datasets dataset, read with "
            f"{' and '.join(missing)}, which is not installed: run `{TFDS_EXTRA}` (the digits "
            f"and folder datasets need neither).")


@functools.cache
def input_tensorflow() -> Any:
    """Imports TensorFlow for tfds input pipelines: quiet, and kept off any GPU (JAX owns
    devices).

    The environment settings only take effect if TensorFlow was not imported before. oneDNN is
    turned off: it prints a banner and may reorder float sums, which input pipelines do not need.
    """
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], 'GPU')
    except RuntimeError:  # TF already placed work on devices; nothing left to hide.
        pass
    return tf


def _preprocess(encoded: Any, resolution: int) -> Any:
    """`preprocess_image` in TensorFlow ops, for tf.data pipelines."""
    tf = input_tensorflow()
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    image = image[top:top + side, left:left + side]
    image = tf.image.resize(image, (resolution, resolution), method='area')
    return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)  # area sums can round past 255


def _decoded_batches(records: Any, resolution: int,
                     batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decodes a dataset of (encoded image, label) in order, in batches of `batch_size`."""
    tf = input_tensorflow()
    options = tf.data.Options()
    options.deterministic = True
    ds = records.map(lambda encoded, label: (_preprocess(encoded, resolution), label),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(options).as_numpy_iterator()


class _TfdsSource:
    """A prepared tensorflow-datasets image dataset, streamed per process (module docstring)."""

    def __init__(self, name: str, data_dir: str | None, split: str, resolution: int,
                 train_fraction: float, shuffle_buffer: int, layout: _Layout):
        check_tfds_installed(name)
        import tensorflow_datasets as tfds  # imports no TensorFlow by itself

        self._tfds = tfds
        self._name = name
        try:   # the class alone: checking names and paths imports no TensorFlow
            builder_cls = tfds.builder_cls(name.split(':')[0].split('/')[0])
        except Exception as e:
            detail = str(e).split('\n', 1)[0]
            raise ValueError(
                f'Unknown dataset data.name={name!r} ({detail}). Supported: {_SUPPORTED}.') from e
        if data_dir and not epath.Path(data_dir).is_dir():
            raise self._not_found(f'data.data_dir={data_dir!r} does not exist', data_dir,
                                  builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS)
        input_tensorflow()   # quiet and off the GPUs before tfds's builder imports it
        self._builder = tfds.builder(name, data_dir=data_dir)
        features = dict(self._builder.info.features)
        if not isinstance(features.get('image'), tfds.features.Image):
            raise ValueError(f"data.name={name!r} has no 'image' Image feature: {features}.")
        label = features.get('label')
        self._has_label = isinstance(label, tfds.features.ClassLabel)
        self.num_classes = label.num_classes if self._has_label else 1
        self._resolution = resolution
        self._shuffle_buffer = shuffle_buffer
        self._layout = layout
        if train_fraction < 1.0:
            total = self._split_info(split).num_examples
            split = f'{split}[:{max(1, round(train_fraction * total))}]'
        if layout.process_count > 1:
            split = tfds.even_splits(split, n=layout.process_count, drop_remainder=True)[
                layout.process_index]
        self._split = split
        self._epoch_size = int(self._epoch(0).cardinality())
        if self._epoch_size < 1:
            raise ValueError(f'data.split={split!r} of {name!r} has no examples for this process.')
        self.num_examples = self._epoch_size * layout.process_count

    def _split_info(self, split: str) -> Any:
        try:
            return self._builder.info.splits[split]
        except (KeyError, ValueError) as e:
            raise ValueError(f'data.split={split!r} of {self._name!r}: {e}') from e

    def _not_found(self, reason: str, root: str | None = None,
                   manual: str | None = None) -> DatasetNotFoundError:
        """The error for a dataset that is not prepared where data.data_dir points."""
        if root is None:
            root, manual = self._builder.data_dir_root, self._builder.MANUAL_DOWNLOAD_INSTRUCTIONS
        if manual:
            how = (f'it needs a manual download: put the files below in <manual_dir> and run '
                   f'`tfds build {self._name} --manual_dir=<manual_dir> --data_dir={root}`. '
                   + ' '.join(manual.split()))
        else:
            how = (f'run `tfds build {self._name} --data_dir={root}` on a machine with network '
                   f'access and copy that data_dir here if needed.')
        return DatasetNotFoundError(
            f'data.name={self._name!r}: {reason}. Datasets are never downloaded at run time; pass '
            f'--config.data.data_dir=<tfds data_dir> where it is prepared. To prepare it, {how}')

    def _epoch(self, epoch: int) -> Any:
        """This process's epoch `epoch`: (encoded image, label) in a deterministic order."""
        tf, tfds = input_tensorflow(), self._tfds
        layout = self._layout
        seed = int(layout.rng(_TFDS_STREAM, layout.process_index, layout.process_count, epoch)
                   .integers(2**31))
        options = tf.data.Options()
        options.deterministic = True
        read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False, skip_prefetch=True,
                                      options=options)
        try:
            ds = self._builder.as_dataset(
                split=self._split, shuffle_files=True, read_config=read_config,
                decoders={'image': tfds.decode.SkipDecoding()})
        except AssertionError as e:  # tfds's "could not find data in <data_dir>"
            raise self._not_found(f'no prepared data at {self._builder.data_dir}') from e
        except ValueError as e:  # unknown split name
            raise ValueError(f'data.split={self._split!r} of {self._name!r}: {e}') from e
        no_label = tf.constant(0, tf.int64)
        has_label = self._has_label
        ds = ds.map(lambda ex: (ex['image'], ex['label'] if has_label else no_label))
        return ds.shuffle(self._shuffle_buffer, seed=seed)

    def batches(self, start_batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        b, size = self._layout.local_batch_size, self._epoch_size
        window = math.ceil(size / b)
        n = start_batch
        while True:
            start, stop = n * b, (n + window) * b
            first_epoch, skip = divmod(start, size)
            epochs = [self._epoch(e) for e in range(first_epoch, (stop - 1) // size + 1)]
            records = functools.reduce(lambda a, c: a.concatenate(c), epochs)
            records = records.skip(skip).take(stop - start)
            yield from _decoded_batches(records, self._resolution, b)
            n += window

