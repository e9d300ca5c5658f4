r"""Plot the logged singular values of G's and D's weights over training (Figure 3, Appendix F).

    python -m biggan.plot_spectra --workdir=DIR --out=spectra.png [--weights=REGEX]

Reads ``<workdir>/spectra.jsonl`` (written when ``config.train.spectra_every`` > 0) and draws
one row per network and four panels: sigma0, sigma1, sigma2 and sigma0 / sigma1 of every weight
(or of the weights whose name matches ``--weights``, e.g. '^linear' for G's first layer), one
line per weight. Collapses recorded in ``<workdir>/collapse.json`` are dashed red lines.
"""

import json
import re
from typing import Any

import matplotlib
from absl import app, flags
from etils import epath

from biggan.stability import COLLAPSE_FILE, read_spectra
from gencore.console import stop_on_error

matplotlib.use("Agg")

PANELS = ("sigma0", "sigma1", "sigma2", "sigma0 / sigma1")
LEGEND_MAX = 12
"""Most lines a panel labels in a legend."""


def series(records: list[dict[str, Any]], net: str, pattern: str = ""
           ) -> dict[str, tuple[list[int], list[list[float]]]]:
    """{weight: (steps, [[sigma0, sigma1, sigma2], ...])} of ``net`` for weights matching
    ``pattern`` (a regex searched in the name; '' matches all)."""
    out: dict[str, tuple[list[int], list[list[float]]]] = {}
    for record in records:
        for name, sigmas in record["spectra"].get(net, {}).items():
            if re.search(pattern, name):
                steps, values = out.setdefault(name, ([], []))
                steps.append(record["step"])
                values.append(sigmas)
    return out


def plot(workdir: str, out: str, pattern: str = "") -> None:
    """Writes the figure for ``workdir``'s spectra to ``out`` (PNG)."""
    import matplotlib.pyplot as plt

    records = read_spectra(workdir)
    nets = sorted({net for record in records for net in record["spectra"]},
                  key=lambda n: (n != "G", n))
    collapse_path = epath.Path(workdir) / COLLAPSE_FILE
    collapses = ([e["step"] for e in json.loads(collapse_path.read_text())]
                 if collapse_path.exists() else [])
    fig, axes = plt.subplots(len(nets), len(PANELS), figsize=(4.5 * len(PANELS), 3.5 * len(nets)),
                             squeeze=False)
    for row, net in zip(axes, nets, strict=True):
        weights = series(records, net, pattern)
        for column, (ax, panel) in enumerate(zip(row, PANELS, strict=True)):
            for name, (steps, values) in sorted(weights.items()):
                if column < 3:   # zeros beyond a weight's rank (e.g. D's [C, 1]) are left out
                    ys = [v[column] or float("nan") for v in values]
                else:
                    ys = [v[0] / v[1] if v[1] else float("nan") for v in values]
                ax.plot(steps, ys, linewidth=0.8, label=name)
            for step in collapses:
                ax.axvline(step, color="red", linestyle="--", linewidth=1)
            ax.set(title=f"{net}: {panel}", xlabel="step")
            if 0 < len(weights) <= LEGEND_MAX and column == 0:
                ax.legend(fontsize=6)
    fig.tight_layout()
    path = epath.Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> None:
    del argv
    flag = flags.FLAGS
    plot(flag.workdir, flag.out, flag.weights)


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "The train job's workdir.", required=True)
    flags.DEFINE_string("out", None, "Output PNG.", required=True)
    flags.DEFINE_string("weights", "", "Regex: plot only the weights whose name matches.")
    app.run(stop_on_error("plot_spectra", main))
