"""Runs ``python -m <module> [args]`` with parts of the environment taken away, for tests:

    python tests/run_restricted.py [--no-tensorflow] [--no-models] <module> [args]

--no-tensorflow: TensorFlow, tensorflow-datasets and clu behave as if not installed (importing
  them raises ModuleNotFoundError, ``importlib.util.find_spec`` returns None).
--no-models: initialising or applying any Flax module raises, so a job that fails with its own
  message under it has checked its input before building a model.
"""

import runpy
import sys

BLOCKED = ("tensorflow", "tensorflow_datasets", "clu")
MODEL_BUILT = "a Flax model was built before the input was checked"


def block_tensorflow() -> None:
    for name in BLOCKED:
        sys.modules[name] = None


def block_models() -> None:
    import flax.linen as nn

    def refuse(*args, **kwargs):
        raise AssertionError(MODEL_BUILT)

    nn.Module.init = nn.Module.init_with_output = nn.Module.apply = refuse


if __name__ == "__main__":
    args = sys.argv[1:]
    while args and args[0].startswith("--no-"):
        {"--no-tensorflow": block_tensorflow, "--no-models": block_models}[args.pop(0)]()
    sys.argv = args
    runpy.run_module(args[0], run_name="__main__", alter_sys=True)
