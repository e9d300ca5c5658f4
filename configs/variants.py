"""What every config file shares: naming its variants, and the ``runlocal`` variant.

A config file defines ``get_config(arg)`` and ``VARIANTS``; ``--config=file.py:row8`` passes
``'row8'``. Decorated with ``with_runlocal(shrink)``, it also takes ``'row8,runlocal'`` (or
``'runlocal'`` for a file without variants): the same row, shrunk by its family's ``shrink``
to run a few steps on a CPU in minutes, on the embedded digits.
"""

import functools
from collections.abc import Callable, Sequence

import ml_collections

RUNLOCAL = "runlocal"
GetConfig = Callable[[str | None], ml_collections.ConfigDict]


def variant_error(arg: str | None, variants: Sequence[str], config_file: str) -> ValueError:
    """Error for an unknown ``file.py:variant`` name, listing the valid ones."""
    names = ", ".join(f"{config_file}:{v}" for v in variants)
    return ValueError(f"Unknown config variant {arg!r} in {config_file}; valid: {names} "
                      f"(each also as '<variant>,{RUNLOCAL}').")


def with_runlocal(shrink: Callable[[ml_collections.ConfigDict], None]
                  ) -> Callable[[GetConfig], GetConfig]:
    """Decorates ``get_config`` to accept ``'<variant>,runlocal'``: the variant's config with
    ``shrink(config)`` applied."""
    def decorate(get_config: GetConfig) -> GetConfig:
        @functools.wraps(get_config)
        def get(arg: str | None = None) -> ml_collections.ConfigDict:
            parts = [p for p in (arg or "").split(",") if p]
            config = get_config(",".join(p for p in parts if p != RUNLOCAL) or None)
            if RUNLOCAL in parts:
                shrink(config)
            return config
        return get
    return decorate
