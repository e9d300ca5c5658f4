"""What the BigGAN and diffusion families share: data input, device mesh, the training loop,
checkpoints, metric writing, Inception and metrics, image sheets.

The experiment configs (`configs/`) are files of the checkout, addressed by path and not
installed. Their shared helpers are imported as `configs.<family>.base`, so importing this
package appends the checkout to `sys.path` when it holds `configs/` (a script run from any
directory, e.g. `python benchmarks/train_step.py`, can then load them).
"""

import pathlib
import sys

_CHECKOUT = pathlib.Path(__file__).resolve().parents[1]
if (_CHECKOUT / "configs").is_dir() and str(_CHECKOUT) not in sys.path:
    sys.path.append(str(_CHECKOUT))
