r"""A reproduction report over train workdirs: one Markdown table and one FID figure.

    python -m gencore.report --workdirs=A,B[,...] --out=DIR [--eval_subdir=eval]

Reads each run's ``<workdir>/<eval_subdir>/metrics_<step>.json`` (written by the eval job,
`gencore.evaluation`) and the config saved with its newest checkpoint
(`gencore.checkpoint.saved_config`), and writes

    DIR/report.md   one row per run: the paper's figures (``config.paper``), the best FID
                    (lowest over every step and setting in the run's first feature space) with
                    its step, setting, sample count, IS, precision / recall and class accuracy,
                    and the best NLL in bits/dim (lowest over steps); a run without metrics
                    files is 'not evaluated'. Figures of a data-specific feature space (the
                    digits classifier) are marked: they are not comparable with Inception FID.
    DIR/report.png  FID over training steps, one line per run in its best setting (its other
                    settings faint).
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
from absl import app, flags
from etils import epath

from gencore import checkpoint
from gencore.console import stop_on_error
from gencore.evaluation import setting_name

matplotlib.use("Agg")

REPORT_FILE = "report.md"
FIGURE_FILE = "report.png"
DATA_SPECIFIC_MARK = "\N{DAGGER}"
PAPER_FIGURES = (("fid", "FID {}"), ("fid_test", "FID (test) {}"), ("inception_score", "IS {}"),
                 ("min_fid", "min FID {}"), ("baseline_fid", "baseline FID {}"),
                 ("nll_bpd", "NLL {} bits/dim"))
"""(config.paper field, format) of the figures the paper column shows, in order."""
COLUMNS = ("run", "config", "paper", "feature space", "best FID", "step", "setting", "samples",
           "IS", "precision / recall", "class acc.", "best NLL (bits/dim)")
NONE = "-"


@dataclass(frozen=True)
class Run:
    """One workdir: its name, saved config (None without a checkpoint) and eval results in step
    order."""

    name: str
    config: dict[str, Any] | None
    results: list[dict[str, Any]]


@dataclass(frozen=True)
class Best:
    """The lowest FID of a run: its result, setting entry and feature space."""

    result: dict[str, Any]
    entry: dict[str, Any]
    space: str

    @property
    def fid(self) -> float:
        return self.entry[self.space]["fid"]

    @property
    def data_specific(self) -> bool:
        return self.result["feature_spaces"][self.space]["data_specific"]


def read_run(workdir: str, eval_subdir: str = "eval") -> Run:
    """The saved config and eval results of ``workdir``; raises FileNotFoundError naming
    ``--workdirs`` if it is not a directory."""
    path = epath.Path(workdir)
    if not path.is_dir():
        raise FileNotFoundError(f"--workdirs: {workdir} is not a directory.")
    eval_dir = path / eval_subdir
    files = sorted(eval_dir.glob("metrics_*.json")) if eval_dir.is_dir() else []
    results = sorted((json.loads(f.read_text()) for f in files), key=lambda r: r["step"])
    return Run(path.name, checkpoint.saved_config(path), results)


def primary_space(run: Run) -> str | None:
    """The first feature space of the run's newest result (the one `best_fid.json` tracks)."""
    return next(iter(run.results[-1]["feature_spaces"]), None) if run.results else None


def fid_series(run: Run, space: str) -> dict[str, tuple[list[int], list[float]]]:
    """{setting name: (steps, FIDs)} of every setting scored in ``space``, finite FIDs only."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for result in run.results:
        for entry in result["settings"]:
            fid = entry.get(space, {}).get("fid")
            if fid is not None and math.isfinite(fid):
                steps, fids = series.setdefault(setting_name(entry["setting"]), ([], []))
                steps.append(result["step"])
                fids.append(fid)
    return series


def best_fid(run: Run) -> Best | None:
    """The (step, setting) of the run's lowest finite FID in its primary space, or None."""
    space = primary_space(run)
    candidates = [Best(result, entry, space) for result in run.results
                  for entry in result["settings"]
                  if math.isfinite(entry.get(space, {}).get("fid", math.nan))]
    return min(candidates, key=lambda b: b.fid) if candidates else None


def best_nll(run: Run) -> tuple[float, int] | None:
    """(lowest finite bits/dim, its step) over the run's results, or None without one."""
    values = [(r["step_metrics"]["bits_per_dim"], r["step"]) for r in run.results
              if math.isfinite(r.get("step_metrics", {}).get("bits_per_dim", math.nan))]
    return min(values) if values else None


def number(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits."""
    return f"{value:.{digits}g}"


def paper_cell(config: dict[str, Any] | None) -> str:
    """'FID 14.73, IS 9.22; Appendix C.2 ...' from config.paper (Table 2's min FID too);
    'none' without figures."""
    paper = (config or {}).get("paper", {})
    table2 = paper.get("table2", {})
    figures = [text.format(number(paper.get(key, table2.get(key))))
               for key, text in PAPER_FIGURES if paper.get(key, table2.get(key)) is not None]
    source = paper.get("source", "")
    text = ", ".join(figures) or "none"
    return f"{text}; {source}" if figures and source else text


def config_cell(config: dict[str, Any] | None) -> str:
    """'<model> on <data> <resolution>px' of the saved config, or why there is none."""
    if config is None:
        return "unknown (no checkpoint)"
    model, data = config.get("model", {}), config.get("data", {})
    return f"{model.get('name', '?')} on {data.get('name', '?')} {data.get('resolution', '?')}px"


def row(run: Run, eval_subdir: str) -> list[str]:
    """The table cells of one run (`COLUMNS`)."""
    cells = [run.name, config_cell(run.config), paper_cell(run.config)]
    best = best_fid(run)
    if best is None:
        why = "no metrics files" if not run.results else "no finite FID"
        return cells + [f"not evaluated ({why} in {eval_subdir}/)"] + [NONE] * (len(COLUMNS) - 4)
    scores = best.entry[best.space]
    nll = best_nll(run)
    space = (f"{best.space} (data-specific{DATA_SPECIFIC_MARK})" if best.data_specific
             else best.space)
    precision_recall = (f"{number(scores['precision'], 3)} / {number(scores['recall'], 3)}"
                        if "precision" in scores and "recall" in scores else NONE)
    return cells + [
        space, number(best.fid), str(best.result["step"]),
        f"`{setting_name(best.entry['setting'])}`", str(best.result["num_samples"]),
        number(scores["is_mean"]) if "is_mean" in scores else NONE, precision_recall,
        number(scores["class_accuracy"], 3) if "class_accuracy" in scores else NONE,
        f"{number(nll[0])} (step {nll[1]})" if nll else NONE,
    ]


def markdown_row(cells: Sequence[str]) -> str:
    """One table row, '|' in a cell escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def markdown(runs: Sequence[Run], eval_subdir: str = "eval") -> str:
    """The report's Markdown: the table, how its figures were chosen, the reference statistics
    of every evaluated run and the figure."""
    lines = ["# Reproduction report", "", markdown_row(COLUMNS),
             "|" + "---|" * len(COLUMNS)]
    lines += [markdown_row(row(run, eval_subdir)) for run in runs]
    lines += ["", "Best FID: the lowest FID over every evaluated step and setting in the run's "
              "first feature space; IS, precision / recall and class accuracy are those of that "
              "step and setting. Best NLL: the lowest bits/dim over the evaluated steps. Paper: "
              "the figures `config.paper` holds for the run's config."]
    bests = [(run, best_fid(run)) for run in runs]
    if any(best and best.data_specific for _, best in bests):
        lines += ["", f"{DATA_SPECIFIC_MARK} Data-specific feature space (e.g. the digits "
                  "classifier): its FID and IS are not comparable with Inception FID / IS or "
                  "with the paper's figures."]
    references = [f"- {run.name}: {best.result['feature_spaces'][best.space]['reference']}"
                  for run, best in bests if best]
    if references:
        lines += ["", "Reference statistics of the best FID:", "", *references]
    lines += ["", f"![FID over training]({FIGURE_FILE})", ""]
    return "\n".join(lines)


def plot(runs: Sequence[Run], path: epath.Path) -> None:
    """FID over steps: per run its best setting (labelled with its feature space, the best
    point starred) and its other settings faint in the same colour; log-scale FID when it spans
    more than a factor of 10."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    data_specific, fids = False, []
    for run in runs:
        best = best_fid(run)
        if best is None:
            continue
        best_setting = setting_name(best.entry["setting"])
        series = fid_series(run, best.space)
        mark = f" {DATA_SPECIFIC_MARK}" if best.data_specific else ""
        line, = ax.plot(*series[best_setting], "o-",
                        label=f"{run.name} [{best.space}{mark}]: {best_setting}")
        ax.plot([best.result["step"]], [best.fid], "*", color=line.get_color(), markersize=14)
        for name, (steps, values) in series.items():
            fids += values
            if name != best_setting:
                ax.plot(steps, values, color=line.get_color(), alpha=0.25, linewidth=0.8)
        data_specific |= best.data_specific
    if not fids:
        ax.text(0.5, 0.5, "no evaluated run", ha="center", va="center", transform=ax.transAxes)
    elif min(fids) > 0 and max(fids) / min(fids) > 10:
        ax.set_yscale("log")
    note = (f"\n{DATA_SPECIFIC_MARK} data-specific feature space: not comparable with "
            "Inception FID" if data_specific else "")
    ax.set(xlabel="training step", ylabel="FID [feature space]")
    ax.set_title("FID over training: each run's best setting (faint: its other settings)"
                 + note, fontsize=10)
    if fids:
        ax.legend(title="run [feature space]: setting (star: best FID)", fontsize=8,
                  title_fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with path.open("wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def write_report(workdirs: Sequence[str], out: str, eval_subdir: str = "eval") -> str:
    """Writes ``out``/report.md and ``out``/report.png for ``workdirs``; returns the Markdown."""
    runs = [read_run(workdir, eval_subdir) for workdir in workdirs]
    directory = epath.Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    text = markdown(runs, eval_subdir)
    (directory / REPORT_FILE).write_text(text)
    plot(runs, directory / FIGURE_FILE)
    return text


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    flag = flags.FLAGS
    write_report(flag.workdirs, flag.out, flag.eval_subdir)
    print(f"Wrote {epath.Path(flag.out) / REPORT_FILE} and {FIGURE_FILE}.")


if __name__ == "__main__":
    flags.DEFINE_list("workdirs", None, "Train workdirs, comma-separated.", required=True)
    flags.DEFINE_string("out", None, "Output directory of report.md and report.png.",
                        required=True)
    flags.DEFINE_string("eval_subdir", "eval", "Each workdir's eval directory, relative to it.")
    app.run(stop_on_error("report", main))
