"""The search report: score histogram (paper Fig. 4a), Pareto front, proxy-vs-full and one-shot-vs-proxy
correlations, the best cells drawn as graphs with their branch importance (paper Fig. 5b), and a table of the best
cells; written as Markdown, turned into HTML by the ``markdown`` library, next to their PNGs and a ``summary.json``.

A report is written once for a study as it stands: run again on an unchanged study it finds ``summary.json``'s
fingerprint current and writes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from . import record
from .extras import missing_extra

try:
    import markdown
    import optuna
except ImportError as exc:  # the report extra (optuna came with record: the search extra)
    raise missing_extra(exc, "report") from None
from .checkpoint import checkpoint_path, load_run, rerank_run
from .errors import CheckpointError, InputError
from .figures import check_figure_path, draw_cell, figure, histogram, importance_plot, save_figure, scatter
from .files import make_dirs, write_text
from .hub import cell_card
from .ranking import rank_name, score_summary, spearman, top_overlap
from .record import TrialRecord
from .search import completed_trials, proxy_full_pairs
from .space import Cell, branch_label

__all__ = [
    "branch_importance", "Correlation", "correlations", "fingerprint", "HTML", "pareto_front", "report_is_current",
    "ReportSummary", "write_cell_card", "write_report", "write_top_cells"
]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (mIoU up, cost down), sorted by cost."""
    front = [i for i, (miou, cost) in enumerate(points)
             if not any(m >= miou and c <= cost and (m, c) != (miou, cost) for m, c in points)]
    return sorted(front, key=lambda i: points[i][1])


HTML = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;max-width:1080px;
margin:2rem auto;padding:0 1.5rem;line-height:1.5;background:#fff}
h1{font-size:1.8rem;border-bottom:3px solid #4a6fa5;padding-bottom:.3rem}
h2{font-size:1.3rem;margin-top:2.2rem;color:#2c4a75;border-bottom:1px solid #d9e2ec;padding-bottom:.2rem}
p{margin:.6rem 0}code{background:#f0f4f8;padding:0 .25rem;border-radius:3px;font-size:.9em}
table{border-collapse:collapse;width:100%;font-size:.85rem;margin:1rem 0;display:block;overflow-x:auto}
th{background:#2c4a75;color:#fff;text-align:left;padding:.35rem .6rem;white-space:nowrap}
td{padding:.3rem .6rem;border-bottom:1px solid #e4e7eb;vertical-align:top}
tr:nth-child(even) td{background:#f7f9fb}
img{max-width:100%;height:auto;display:block;margin:1rem auto .2rem;border:1px solid #e4e7eb;border-radius:4px}
p em{display:block;text-align:center;color:#52606d;font-size:.9rem}
.facts{background:#f0f4f8;border-left:4px solid #4a6fa5;padding:.6rem 1rem;border-radius:3px}
</style></head>
<body>
$body
</body></html>
""")


def _pareto(trials: list[TrialRecord], path: Path) -> tuple[Path, list[int]]:
    points = [(t.values[0], float(t.madds)) for t in trials]
    front = pareto_front(points)
    fig, ax = figure((6, 3.8))
    ax.scatter([c / 1e6 for _, c in points], [m * 100 for m, _ in points], s=12, color="0.6", label="cells")
    ax.plot([points[i][1] / 1e6 for i in front], [points[i][0] * 100 for i in front], "o-", color="#c0392b",
            label="Pareto front")
    ax.set_xlabel("context-module MAdds at the proxy size (M)")
    ax.set_ylabel("proxy val mIoU (%)")
    ax.legend(fontsize=9)
    ax.set_title(f"{len(front)} of {len(points)} cells on the Pareto front", fontsize=10)
    return save_figure(fig, path), [trials[i].number for i in front]


def _importance(trial: TrialRecord, search_run: Path, path: Path) -> tuple[Path | None, list[float]]:
    """Branch importance of the best cell from its re-ranking checkpoint, if there is one."""
    checkpoint = checkpoint_path(rerank_run(search_run, trial.number))
    if not checkpoint.is_file():
        return None, []
    values = load_run(checkpoint).model.head.branch_importance()
    return importance_plot(trial.cell, values, path, f"trial {trial.number}"), values


@dataclass
class ReportSummary:
    """``summary.json`` of a report, its one writer and reader: what the report found, the files it wrote, and the
    fingerprint of the study it shows (a report is written once for a study as it stands)."""

    study: str
    trials: dict[str, int]
    best_trial: int
    best_by: str
    best_cell: list[dict[str, Any]]
    pareto_front_trials: list[int]
    branch_importance: list[float]
    spearman_rho: float | None
    reranked: int
    oneshot_pairs: int
    oneshot_rho: float | None
    oneshot_top5: int | None
    oneshot_cells: int
    proxy_miou: dict[str, float | None]
    fingerprint: str = ""
    files: dict[str, str] = field(default_factory=dict)

    def write(self, out: Path) -> Path:
        return write_text(out / "summary.json", json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def read(cls, out: Path) -> ReportSummary | None:
        """The summary in the report folder ``out``; None when there is none (or it does not read)."""
        try:
            return cls(**json.loads((out / "summary.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def paths(self, out: Path) -> dict[str, Path]:
        return {name: out / file for name, file in self.files.items()}


def _figures(study: optuna.Study, trials: list[TrialRecord], best: TrialRecord, out: Path, draw: int,
             search_run: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    figures = {"histogram": histogram([t.values[0] for t in trials], record.baseline(study), out / "histogram.png")}
    figures["pareto"], front = _pareto(trials, out / "pareto.png")
    facts: dict[str, Any] = {"pareto_front_trials": front}
    pairs = proxy_full_pairs(study)
    if pairs:
        figures["correlation"] = scatter(pairs, "proxy mIoU", "end-to-end mIoU", out / "correlation.png",
                                         "re-ranked cells")
    oneshot = [(t.oneshot_miou, t.values[0]) for t in trials if t.oneshot_miou is not None]
    if oneshot:
        figures["oneshot"] = scatter(oneshot, "one-shot mIoU", "proxy mIoU", out / "oneshot.png",
                                     "one-shot screen, then the proxy")
    importance_path, facts["branch_importance"] = _importance(best, search_run, out / "importance.png")
    if importance_path:
        figures["importance"] = importance_path
    for rank, trial in enumerate(trials[:draw]):
        figures[f"cell {rank + 1}"] = draw_cell(trial.cell, out / f"cell-{rank + 1}.svg",
                                                f"proxy rank {rank + 1} (trial {trial.number}): "
                                                f"{trial.values[0] * 100:.1f}%")
        write_cell_card(study, trial, out / "cards" / rank_name(rank + 1, trial.number))
    facts.update(spearman_rho=_number(spearman(pairs)), reranked=len(pairs), oneshot_pairs=len(oneshot),
                 oneshot_rho=_number(spearman(oneshot)), oneshot_top5=top_overlap(oneshot) if oneshot else None)
    return figures, facts


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _table(trials: list[TrialRecord], full: dict[int, float], top: int) -> list[str]:
    oneshot = any(t.oneshot_miou is not None for t in trials)
    header = ["proxy rank", "trial", "proxy mIoU %", "full mIoU %", *(["one-shot mIoU %"] * oneshot), "params",
              "MAdds (M)", "cell"]
    rows = []
    for rank, t in enumerate(trials[:top]):
        shot = [f"{t.oneshot_miou * 100:.2f}" if t.oneshot_miou is not None else ""] * oneshot
        rows.append([str(rank + 1), str(t.number), f"{t.values[0] * 100:.2f}",
                     f"{full[t.number] * 100:.2f}" if t.number in full else "", *shot,
                     f"{t.params / 1e6:.3f}M", f"{t.madds / 1e6:.1f}", str(t.cell)])
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


CAPTIONS = {
    "histogram": "Each bar counts the cells by their proxy score; the dashed line is a lone 1x1 convolution: the "
                 "cells to its right gain from their context.",
    "pareto": "Each dot is a cell, its proxy score against the multiply-adds of its context module; the red line "
              "joins the cells that no other beats on both.",
    "correlation": "Each dot is a re-ranked cell, its proxy score against its end-to-end score: where the proxy "
                   "ranks cells as full training does, the dots rise from left to right.",
    "oneshot": "Each dot is a cell the supernet screened and the proxy then trained: where the one-shot score "
               "ranks cells as the proxy does, the dots rise from left to right.",
    "importance": "Each bar is a branch's share of the weights that the cell's final 1x1 projection gives its "
                  "output: the branches the trained model leans on.",
}
"""One line under each plot: what it shows and how to read it."""


def _correlation_text(what: str, count: int, rho: float | None, extra: str = "") -> str:
    """A rank correlation in words, or why there is none."""
    if rho is None:
        return f"{what}: too few cells scored both ways for a rank correlation ({count}; it needs 3, and scores " \
               "that are not all equal)."
    return f"{what}: Spearman rho = {rho:.3f} over {count} cells{extra}."


def _markdown(summary: ReportSummary, table: list[str], figures: dict[str, Path]) -> str:
    scores, states = summary.proxy_miou, summary.trials
    baseline = scores["baseline_1x1"]
    counted = ", ".join(f"{v} {k}" for k, v in states.items() if v)
    lines = [f"# Search report: {summary.study}", "",
             f'<div class="facts">Trials: {counted}. The best cell (by {summary.best_by}) is trial '
             f"{summary.best_trial}, saved as <code>best_cell.json</code>. Proxy val mIoU: best "
             f"{scores['best'] * 100:.2f}%, median {scores['median'] * 100:.2f}%, worst {scores['worst'] * 100:.2f}%"
             + (f"; a lone 1x1 convolution (no context) scores {baseline * 100:.2f}%." if baseline is not None
                else ".") + "</div>", ""]

    def show(name: str, heading: str, *text: str) -> None:
        if name in figures:
            lines.extend([f"## {heading}", "", *text, *([""] if text else []), f"![{heading}]({figures[name].name})",
                          "", f"*{CAPTIONS[name]}*", ""])

    show("histogram", "The proxy scores")
    show("pareto", "Accuracy against cost")
    show("correlation", "The proxy against end-to-end training",
         _correlation_text("Re-ranked cells", summary.reranked, summary.spearman_rho, " (the paper: 0.47)"))
    if summary.reranked and "correlation" not in figures:
        lines += ["## The proxy against end-to-end training", "",
                  _correlation_text("Re-ranked cells", summary.reranked, summary.spearman_rho), ""]
    show("oneshot", "The one-shot screen", _correlation_text(
        f"{summary.oneshot_cells} cells scored by the supernet; one-shot against proxy", summary.oneshot_pairs,
        summary.oneshot_rho, f", top-5 overlap {summary.oneshot_top5}/5" if summary.oneshot_top5 is not None
        else ""))
    if summary.branch_importance:
        total = sum(summary.branch_importance) or 1.0
        shares = ", ".join(f"{branch_label(i)} {100 * v / total:.0f}%"
                           for i, v in enumerate(summary.branch_importance))
        show("importance", "The best cell's branches", f"Each branch's share of the projection's weights: {shares}.")
    lines += ["## The best cells", "", *table, ""]
    for name, path in figures.items():
        if name.startswith("cell "):
            lines += [f"![{name}]({path.name})", "",
                      f"*Proxy rank {name.removeprefix('cell ')}: F is the backbone's feature map, each box a "
                      "branch (its input, its operation), all concatenated and projected by a 1x1 convolution.*", ""]
    return "\n".join(lines) + "\n"


def fingerprint(study: optuna.Study) -> str:
    """What the report depends on: the completed trials and their scores, the re-ranking and the baseline."""
    state = [[t.number, list(t.values), t.oneshot_miou] for t in completed_trials(study)]
    facts = [state, sorted(record.full_scores(study).items()), record.baseline(study),
             len(record.records(study, stage="oneshot"))]
    return hashlib.sha1(json.dumps(facts).encode()).hexdigest()


def _current(out: Path, stamp: str) -> dict[str, Path] | None:
    summary = ReportSummary.read(out)
    return summary.paths(out) if summary is not None and summary.fingerprint == stamp else None


def report_is_current(study: optuna.Study, out_dir: str | Path) -> bool:
    """Whether ``out_dir/report`` already shows the study as it stands."""
    return _current(Path(out_dir) / "report", fingerprint(study)) is not None


def _summary(study: optuna.Study, trials: list[TrialRecord], best: TrialRecord, facts: dict[str, Any],
             stamp: str) -> ReportSummary:
    states = {state.name.lower(): 0 for state in optuna.trial.TrialState}
    for t in record.records(study):
        states[t.state.name.lower()] += 1
    return ReportSummary(
        study=study.study_name, trials=states, best_trial=best.number,
        best_by="end-to-end mIoU (re-ranking)" if record.full_scores(study) else "proxy mIoU",
        best_cell=best.cell.to_records(), **facts,
        oneshot_cells=len(record.records(study, (optuna.trial.TrialState.COMPLETE,), stage="oneshot")),
        proxy_miou=score_summary([t.values[0] for t in trials]) | {"baseline_1x1": record.baseline(study)},
        fingerprint=stamp)


def write_report(study: optuna.Study, out_dir: str | Path, top: int = 10, draw: int = 3,
                 search_run: Path | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, the plots, ``summary.json`` and ``best_cell.json`` into
    ``out_dir/report``; ``search_run`` is the search's run folder, whose re-ranking runs give the best cell's branch
    importance (default ``out_dir``)."""
    out = make_dirs(Path(out_dir) / "report")
    trials = completed_trials(study)
    if not trials:
        raise InputError(f"study {study.study_name!r} has no completed trials yet")
    stamp = fingerprint(study)
    if (current := _current(out, stamp)) is not None:
        return current
    full = record.full_scores(study)
    best = next(t for t in trials if t.number == max(full, key=full.get)) if full else trials[0]
    figures, facts = _figures(study, trials, best, out, draw, Path(search_run or out_dir))
    summary = _summary(study, trials, best, facts, stamp)
    markdown_text = _markdown(summary, _table(trials, full, top), figures)
    write_text(out / "best_cell.json", best.cell.to_json())
    write_text(out / "report.md", markdown_text)
    write_text(out / "report.html", HTML.substitute(title=html.escape(study.study_name),
                                                    body=markdown.markdown(markdown_text, extensions=["tables"])))
    outputs = {"report": out / "report.md", "html": out / "report.html", "best_cell": out / "best_cell.json",
               **figures}
    summary.files = {name: path.name for name, path in outputs.items()}
    summary.write(out)
    return outputs


@dataclass(frozen=True)
class Correlation:
    """Two scores of the same cells and how their rankings agree."""

    what: str
    cells: int
    rho: float
    top5: int | None
    plot: Path


def correlations(study: optuna.Study, out_dir: str | Path) -> list[Correlation]:
    """The study's rank correlations, with their plots (the report is written or found current): proxy against
    end-to-end mIoU of the re-ranked cells, and one-shot against proxy mIoU after a one-shot screen. Fewer than 3
    cells scored two ways is an :class:`~densecell.errors.InputError`."""
    outputs = write_report(study, out_dir)
    summary = ReportSummary.read(outputs["report"].parent)
    found = []
    if summary.reranked >= 3:
        found.append(Correlation("proxy vs end-to-end", summary.reranked, summary.spearman_rho, None,
                                 outputs["correlation"]))
    if summary.oneshot_pairs >= 3:
        found.append(Correlation("one-shot vs proxy", summary.oneshot_pairs, summary.oneshot_rho,
                                 summary.oneshot_top5, outputs["oneshot"]))
    if not found:
        raise InputError(f"study {study.study_name!r}: need at least 3 cells scored two ways (re-ranked, or screened "
                         f"one-shot and trained on the proxy), it has {summary.reranked}")
    return found


def write_cell_card(study: optuna.Study, trial: TrialRecord, folder: str | Path) -> Path:
    """A found cell as something to publish without a model: ``README.md`` (its card, with the Hub's metadata),
    ``cell.json`` and ``cell.png``, with its scores and the study's settings."""
    folder = make_dirs(folder)
    full = record.full_scores(study).get(trial.number)
    scores = [["proxy val mIoU", f"{trial.values[0] * 100:.2f}%"],
              *([["end-to-end val mIoU (re-ranking)", f"{full * 100:.2f}%"]] if full is not None else []),
              *([["one-shot val mIoU", f"{trial.oneshot_miou * 100:.2f}%"]] if trial.oneshot_miou is not None else []),
              ["parameters (context module, at the proxy's size)", f"{trial.params / 1e6:.3f}M"],
              ["multiply-adds (context module, at the proxy's size)", f"{trial.madds / 1e6:.1f}M"]]
    settings = json.dumps(json.loads(record.stored_settings(study) or "{}"), indent=1)
    write_text(folder / "cell.json", trial.cell.to_json())
    draw_cell(trial.cell, folder / "cell.png", f"trial {trial.number}: {trial.values[0] * 100:.1f}% proxy mIoU")
    cell_card(trial.cell, study.study_name, trial.number, scores, settings).save(folder / "README.md")
    return folder


def write_top_cells(study: optuna.Study, k: int, folder: str | Path) -> list[Path]:
    """The ``k`` best cells by proxy mIoU as TF DeepLab JSON files ``rank-01-trial-N.json`` ... in ``folder``
    (``densecell fidelity --cells FOLDER`` reads them back), each with its card in ``cards/rank-01-trial-N/``."""
    written = []
    for rank, trial in enumerate(completed_trials(study)[:k], 1):
        name = rank_name(rank, trial.number)
        written.append(write_text(Path(folder) / f"{name}.json", trial.cell.to_json()))
        write_cell_card(study, trial, Path(folder) / "cards" / name)
    return written


def branch_importance(checkpoint: str | Path, plot: str | Path | None = None) -> tuple[Cell, list[float]]:
    """Paper Fig. 5b for a trained DPC model: its cell and the L1 norm of the projection weights per branch (drawn
    into ``plot`` when given). A checkpoint of another head is a :class:`~densecell.errors.CheckpointError`."""
    if plot is not None:
        check_figure_path(plot)
    run = load_run(checkpoint)
    if run.model.config.get("head") != "dpc":
        raise CheckpointError(f"{checkpoint}: not a DPC model (head {run.model.config.get('head')!r})")
    values = run.model.head.branch_importance()
    if plot is not None:
        importance_plot(run.model.head.cell, values, Path(plot), str(checkpoint))
    return run.model.head.cell, values
