"""Shared by the input-pipeline tests: a data config, taking batches, exact-resume checks."""

import numpy as np

from gencore import data


def data_config(**fields):
    config = data.default_data_config()
    config.update(fields)
    return config


def take(pipeline, count):
    return [next(pipeline) for _ in range(count)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x['image'], y['image'])
        np.testing.assert_array_equal(x['label'], y['label'])


def assert_resumes_exactly(config, batch, start, count=4):
    full = take(data.create_input_pipeline(config, global_batch_size=batch, seed=3,
                                            process_count=1, process_index=0), start + count)
    resumed = data.create_input_pipeline(config, global_batch_size=batch, seed=3,
                                         start_batch=start, process_count=1, process_index=0)
    assert resumed.next_batch == start
    assert_same_batches(full[start:], take(resumed, count))
    return full
