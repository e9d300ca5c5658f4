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


def not_found_message(fields, empty_dir):
    """The DatasetNotFoundError message for a data config of ``fields``, where '{empty}' in a
    value stands for ``empty_dir``."""
    fields = {k: v.format(empty=empty_dir) for k, v in fields.items()}
    try:
        data.create_input_pipeline(data_config(**fields), global_batch_size=4, seed=0,
                                   process_count=1)
    except data.DatasetNotFoundError as error:
        assert 'data' in str(error)
        return str(error)
    raise AssertionError(f'no DatasetNotFoundError for {fields}')
