"""TensorBoard event files without TensorFlow: scalars, images and hyperparameters.

`MetricWriter(logdir)` writes `events.out.tfevents.*` files that TensorBoard reads, using the
`tensorboard` package's record format and protocol buffers (no TensorFlow, no clu). `logdir`
is a local path or any `etils.epath` path (e.g. `gs://bucket/run`). Objects in a bucket cannot
be appended to, so there each `flush()` closes the current event file and the next write
starts another one in the same directory; TensorBoard reads them all in name order. Only
process 0 writes (pass ``enabled=jax.process_index() == 0``); every scalar also goes to the
absl log.
"""

import io
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging
from etils import epath
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.summary.writer.record_writer import RecordWriter


def is_local(path: str) -> bool:
    """True for a file-system path, False for a URL such as gs://bucket/dir."""
    return "://" not in str(path)


class MetricWriter:
    """Scalars, images and hyperparameters of a run, as TensorBoard event files in ``logdir``."""

    def __init__(self, logdir: str, enabled: bool = True):
        self._logdir = epath.Path(logdir)
        self._enabled = enabled
        self._local = is_local(str(logdir))
        self._file: Any = None
        self._records: RecordWriter | None = None
        self._files_opened = 0

    def _write(self, event: event_pb2.Event) -> None:
        if self._records is None:
            self._logdir.mkdir(parents=True, exist_ok=True)
            name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
                    f".{os.getpid()}.{self._files_opened}")
            self._files_opened += 1
            self._file = (self._logdir / name).open("wb")
            self._records = RecordWriter(self._file)
            self._records.write(event_pb2.Event(
                wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        event.wall_time = time.time()
        self._records.write(event.SerializeToString())

    def _write_summary(self, step: int, summary: summary_pb2.Summary) -> None:
        if self._enabled:
            self._write(event_pb2.Event(step=int(step), summary=summary))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """One scalar series point per name at ``step``."""
        logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.6g}" for k, v in scalars.items()))
        self._write_summary(step, summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag=name, simple_value=float(value))
            for name, value in scalars.items()]))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Images as PNG: uint8 [H, W, 3] (or [H, W, 1]) per name."""
        values = []
        for name, image in images.items():
            image = np.asarray(image)
            png = io.BytesIO()
            Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(png, "PNG")
            values.append(summary_pb2.Summary.Value(tag=name, image=summary_pb2.Summary.Image(
                height=image.shape[0], width=image.shape[1], colorspace=image.shape[2],
                encoded_image_string=png.getvalue())))
        self._write_summary(step, summary_pb2.Summary(value=values))

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Hyperparameters for TensorBoard's HParams tab (bools, numbers, strings; others as
        their repr)."""
        plain = {k: v if isinstance(v, bool | int | float | str) else repr(v)
                 for k, v in hparams.items()}
        self._write_summary(0, hparams_summary.hparams_pb(plain))

    def flush(self) -> None:
        """Makes everything written so far readable (on a bucket: closes the event file)."""
        if self._records is None:
            return
        if self._local:
            self._records.flush()
        else:
            self.close()

    def close(self) -> None:
        if self._records is not None:
            self._records.close()
            self._records, self._file = None, None
