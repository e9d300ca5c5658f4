"""Runs ``python -m <module> [args]`` as if TensorFlow, tensorflow-datasets and clu were not
installed: importing any of them raises ModuleNotFoundError and
``importlib.util.find_spec`` reports them missing (a ``None`` entry in ``sys.modules``).

    python tests/no_tensorflow.py biggan.main --config=... --workdir=...
"""

import runpy
import sys

BLOCKED = ("tensorflow", "tensorflow_datasets", "clu")


def block_tensorflow() -> None:
    for name in BLOCKED:
        sys.modules[name] = None


if __name__ == "__main__":
    block_tensorflow()
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
