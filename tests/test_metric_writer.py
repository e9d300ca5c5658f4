"""gencore/metric_writer.py: event files that TensorBoard's own reader reads back, without
TensorFlow; on a bucket (no appends) each flush starts a new file and nothing is lost."""

import logging as std_logging
import os

import numpy as np
from tensorboard.backend.event_processing import event_accumulator

from gencore import console
from gencore.console import duration, progress_line
from gencore.metric_writer import MetricWriter, is_local


def read(logdir):
    events = event_accumulator.EventAccumulator(str(logdir), size_guidance={"images": 0,
                                                                            "tensors": 0})
    events.Reload()
    return events


def test_scalars_images_and_hparams_read_back(tmp_path):
    writer = MetricWriter(str(tmp_path))
    writer.write_hparams({"lr": 1e-3, "loss": "hinge", "steps": 10, "shape": (1, 2)})
    writer.write_scalars(1, {"loss": 0.5, "acc": 0.25})
    writer.write_scalars(2, {"loss": 0.25})
    sheet = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    writer.write_images(2, {"samples": sheet})
    writer.close()
    events = read(tmp_path)
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 0.5), (2, 0.25)]
    assert [e.value for e in events.Scalars("acc")] == [0.25]
    (image,) = events.Images("samples")
    assert (image.step, image.height, image.width) == (2, 6, 10)
    assert "_hparams_/session_start_info" in events.Tags()["tensors"]


def test_bucket_paths_start_a_new_file_at_each_flush(tmp_path):
    writer = MetricWriter(str(tmp_path))
    writer._local = False      # what a gs:// logdir does: files cannot be appended to
    for step in range(3):
        writer.write_scalars(step, {"loss": float(step)})
        writer.flush()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 3
    assert [e.value for e in read(tmp_path).Scalars("loss")] == [0.0, 1.0, 2.0]


def test_disabled_writer_writes_nothing(tmp_path):
    writer = MetricWriter(str(tmp_path / "run"), enabled=False)
    writer.write_scalars(1, {"loss": 1.0})
    writer.close()
    assert not (tmp_path / "run").exists()


def test_paths_and_progress_line():
    assert is_local("/tmp/run") and is_local("workdirs/digits")
    assert not is_local("gs://bucket/run")
    assert duration(12) == "12s" and duration(288) == "4m48s" and duration(3720) == "1h02m"
    line = progress_line(250, 1200, 3.3, {"d_loss_real": 0.9124, "g_loss": 1.5, "lr": 1e-3})
    assert line == "step  250/1200 ( 21%)  3.3 steps/s  ETA 4m48s  d_loss_real 0.9124  g_loss 1.5"


def test_orbax_warnings_go_to_the_log_file_only():
    """With the log in a file, orbax's warnings become INFO (the file, not the console); other
    warnings stay warnings."""
    def record(path):
        return std_logging.LogRecord("absl", std_logging.WARNING, path, 1, "m", None, None)

    demote = console.OrbaxWarningsToLog()
    orbax = record(os.path.join("site-packages", "orbax", "checkpoint", "checkpoint_manager.py"))
    ours = record(os.path.join("gencore", "checkpoint.py"))
    assert demote.filter(orbax) and demote.filter(ours)
    assert (orbax.levelno, orbax.levelname) == (std_logging.INFO, "INFO")
    assert ours.levelno == std_logging.WARNING
