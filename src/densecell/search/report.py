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
import inspect
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from ..core.extras import missing_extra
from . import record

try:
    import markdown
    import optuna
except ImportError as exc:  # the report extra (optuna came with record: the search extra)
    raise missing_extra(exc, "report") from None
from ..cell.drawing import draw_cell, importance_plot
from ..cell.space import Cell, branch_label
from ..core.errors import CacheError, CheckpointError, InputError
from ..core.figures import check_figure_path, figure, histogram, save_figure, scatter
from ..core.files import make_dirs, write_text
from ..core.ranking import rank_name, score_summary, spearman, top_overlap
from ..core.registry import SAMPLERS
from ..models.hub import cell_card
from ..training.checkpoint import checkpoint_path, finished_iteration, load_run, rerank_run
from .cache import cache_source
from .record import TrialRecord
from .status import completed_trials, proxy_full_pairs, state_counts

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
.facts a{color:#2c4a75;font-weight:600}
.scroll{overflow-x:auto;max-width:100%}.scroll table{display:table;margin:0}.scroll td{white-space:nowrap}
img.best-cell{width:100%;border:none}
@media (max-width:700px){body{padding:0 .7rem;margin:1rem auto}h1{font-size:1.4rem}table{font-size:.78rem}
td,th{padding:.25rem .4rem}}
</style></head>
<body>
$body
</body></html>
""")


def _latency_ms(trial: TrialRecord) -> float | None:
    """A trial's latency: predicted on the device profile's device, else timed on its worker."""
    if trial.predicted_ms is not None:
        return trial.predicted_ms
    return trial.latency_s * 1000 if trial.latency_s is not None else None


def _latency_text(summary: ReportSummary) -> str:
    """What the latency front rests on: the device profile and the budget, or the worker's own timing."""
    latency = summary.search.get("latency") or {}
    if not latency.get("profile"):
        return "Latency is the head's, timed on the worker that trained it (no device profile was given)."
    budget = latency.get("budget_ms")
    return (f"Latencies are predicted by the device profile {Path(latency['profile']).name}" +
            (f"; the search proposed only cells under its budget of {budget:g} ms" if budget else "") +
            ". Circles: the re-ranked cells timed whole on the profile's own machine, where this is it.")


def _pareto(trials: list[TrialRecord], best: TrialRecord, path: Path, cost: Callable[[TrialRecord], float],
            axis: str, measured: dict[int, float] | None = None) -> tuple[Path, list[int]]:
    """Proxy mIoU against ``cost`` (MAdds, or latency), the front of the cells nothing beats on both drawn;
    ``measured``: the latencies timed on the device for some trials, drawn beside their predictions."""
    points = [(t.values[0], cost(t)) for t in trials]
    front = pareto_front(points)
    fig, ax = figure((7, 4.4))
    ax.scatter([c for _, c in points], [m * 100 for m, _ in points], s=16, color="0.55", label="cells")
    ax.plot([points[i][1] for i in front], [points[i][0] * 100 for i in front], "o-", color="#c0392b",
            label="Pareto front")
    timed = [(measured[t.number], t.values[0] * 100) for t in trials if measured and t.number in measured]
    if timed:
        ax.scatter(*zip(*timed), s=60, facecolors="none", edgecolors="#2c4a75", lw=1.5,
                   label="measured on the device (re-ranked cells)")
    if best in trials:
        ax.scatter([cost(best)], [best.values[0] * 100], s=220, marker="*", color="#f1c40f", edgecolor="black",
                   zorder=5, label=f"the chosen cell (trial {best.number})")
    for t, (miou, value) in zip(trials, points):
        ax.annotate(str(t.number), (value, miou * 100), xytext=(4, 3), textcoords="offset points", fontsize=8,
                    color="0.25")
    ax.set_xlabel(axis)
    ax.set_ylabel("proxy val mIoU (%)")
    ax.legend(fontsize=9, loc="lower right", framealpha=0.9)
    ax.set_title(f"{len(front)} of {len(points)} cells on the Pareto front (numbers: trials)", fontsize=10)
    return save_figure(fig, path), [trials[i].number for i in front]


def _progress(study: optuna.Study, startup: int | None, best: TrialRecord, path: Path) -> Path:
    """The best proxy score so far against the trials in the order they were numbered, the sampler's uniform
    start-up shaded."""
    done = sorted(record.records(study, (optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number)
    fig, ax = figure((7, 3.6))
    scores = [t.values[0] * 100 for t in done]
    running = [max(scores[: i + 1]) for i in range(len(scores))]
    order = list(range(1, len(done) + 1))
    if startup:
        ax.axvspan(0.5, min(startup, len(done)) + 0.5, color="#f0f4f8", label=f"uniform start-up ({startup} cells)")
    ax.scatter(order, scores, s=14, color="0.6", label="each cell")
    ax.step(order, running, where="post", color="#2c4a75", lw=2, label="best so far")
    where = next(i for i, t in enumerate(done) if t.number == best.number)
    ax.scatter([where + 1], [scores[where]], s=220, marker="*", color="#f1c40f", edgecolor="black", zorder=5,
               label=f"the chosen cell (trial {best.number})")
    ax.set_xlabel("completed cells, in trial order")
    ax.set_ylabel("proxy val mIoU (%)")
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    ax.set_title("the search over time", fontsize=10)
    return save_figure(fig, path)


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
    search: dict[str, Any] = field(default_factory=dict)
    """How the search ran: sampler, budget, workers, wall time, compute, the proxy, the backbone (:func:`_how`)."""
    retrained_iterations: dict[str, int] = field(default_factory=dict)
    """End-to-end iterations of each re-ranked trial (by trial number)."""
    learned_nothing: list[int] = field(default_factory=list)
    """Trials that scored no better than the lone 1x1 convolution."""
    best_rank: int = 1
    """The chosen cell's rank by proxy score."""
    latency_front_trials: list[int] = field(default_factory=list)
    """The cells no other beats on both proxy mIoU and latency (a study that knows latencies)."""
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


MIN_PAIRS = 5
"""Cells scored two ways below which a rank correlation is a sentence, not a plot: a rho over 2 to 4 points says
little."""


def _figures(study: optuna.Study, trials: list[TrialRecord], best: TrialRecord, out: Path, draw: int,
             search_run: Path, startup: int | None) -> tuple[dict[str, Path], dict[str, Any]]:
    figures = {"progress": _progress(study, startup, best, out / "progress.png"),
               "histogram": histogram([t.values[0] for t in trials], record.baseline(study), out / "histogram.png")}
    figures["pareto"], front = _pareto(trials, best, out / "pareto.png", lambda t: t.madds / 1e6,
                                       "context-module MAdds at the proxy size (M)")
    facts: dict[str, Any] = {"pareto_front_trials": front}
    timed = [t for t in trials if _latency_ms(t) is not None]
    if timed:
        predicted = any(t.predicted_ms is not None for t in timed)
        figures["latency"], facts["latency_front_trials"] = _pareto(
            timed, best, out / "latency.png", _latency_ms,
            "latency on the profile's device (ms, predicted)" if predicted else "head latency on the worker (ms)",
            record.measured_latencies(study))
    pairs = proxy_full_pairs(study)
    if len(pairs) >= MIN_PAIRS:
        figures["correlation"] = scatter(pairs, "proxy mIoU", "end-to-end mIoU", out / "correlation.png",
                                         "re-ranked cells")
    oneshot = [(t.oneshot_miou, t.values[0]) for t in trials if t.oneshot_miou is not None]
    if len(oneshot) >= MIN_PAIRS:
        figures["oneshot"] = scatter(oneshot, "one-shot mIoU", "proxy mIoU", out / "oneshot.png",
                                     "one-shot screen, then the proxy")
    importance_path, facts["branch_importance"] = _importance(best, search_run, out / "importance.png")
    if importance_path:
        figures["importance"] = importance_path
    drawn = [best] + [t for t in trials[:draw] if t.number != best.number][: draw - 1]
    for trial in drawn:
        rank = trials.index(trial) + 1
        figures[f"cell {rank}"] = draw_cell(trial.cell, out / f"cell-{rank}.svg",
                                            f"proxy rank {rank}, trial {trial.number}: "
                                            f"{trial.values[0] * 100:.1f}% proxy mIoU",
                                            None if trial is best else best.cell)
    for rank, trial in enumerate(trials[:draw], 1):
        write_cell_card(study, trial, out / "cards" / rank_name(rank, trial.number))
    if best not in trials[:draw]:
        write_cell_card(study, best, out / "cards" / rank_name(trials.index(best) + 1, best.number))
    facts.update(spearman_rho=_number(spearman(pairs)), reranked=len(pairs), oneshot_pairs=len(oneshot),
                 oneshot_rho=_number(spearman(oneshot)), oneshot_top5=top_overlap(oneshot) if oneshot else None)
    return figures, facts


def _startup(sampler: str) -> int | None:
    """How many uniform cells a sampler starts with (its class's ``startup`` or ``population`` default), if any."""
    owner = getattr(SAMPLERS[sampler], "__self__", None) if sampler in SAMPLERS else None
    if owner is None:
        return None
    parameters = inspect.signature(owner.__init__).parameters
    return next((parameters[name].default for name in ("startup", "population") if name in parameters), None)


def _how(study: optuna.Study) -> dict[str, Any]:
    """How the search ran, from the study: its settings, the workers seen, its wall time and compute."""
    stored = json.loads(record.stored_settings(study) or "{}")
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if record.stage_of(t) == "proxy"]
    starts = [t.datetime_start for t in done if t.datetime_start]
    ends = [t.datetime_complete for t in done if t.datetime_complete]
    records = record.records(study)
    try:
        source = cache_source(stored["cache_dir"])
    except (KeyError, CacheError):
        source = None
    proxy = stored.get("proxy", {})
    return {"sampler": stored.get("sampler"), "trials": stored.get("trials"), "mode": stored.get("mode"),
            "pruner": stored.get("pruner"), "workers": len({(t.host, t.pid) for t in records if t.pid is not None}),
            "wall_s": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
            "compute_s": sum(t.seconds or 0.0 for t in records),
            "proxy": {key: proxy.get(key) for key in ("iterations", "batch_size", "optimizer", "lr", "filters")},
            "backbone": source.backbone if source else None, "weights": source.weights if source else None,
            "startup": _startup(str(stored.get("sampler"))), "latency": stored.get("latency") or {}}


def _retrained(full: dict[int, float], search_run: Path) -> dict[str, int]:
    """The end-to-end iterations of each re-ranked trial, from its re-ranking checkpoint."""
    found = {}
    for number in full:
        iterations = finished_iteration(checkpoint_path(rerank_run(search_run, number)))
        if iterations is not None:
            found[str(number)] = iterations
    return found


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _table(trials: list[TrialRecord], summary: ReportSummary, full: dict[int, float], top: int) -> list[str]:
    oneshot = any(t.oneshot_miou is not None for t in trials)
    header = ["rank", "trial", "proxy %", "re-trained %", *(["one-shot %"] * oneshot), "params", "MAdds (M)", "cell"]
    rows = []
    for rank, t in enumerate(trials[:top]):
        shot = [f"{t.oneshot_miou * 100:.2f}" if t.oneshot_miou is not None else "not screened"] * oneshot
        proxy = f"{t.values[0] * 100:.2f}" + (" (no better than 1x1)" if t.number in summary.learned_nothing else "")
        rows.append([str(rank + 1), str(t.number), proxy,
                     f"{full[t.number] * 100:.2f}" if t.number in full else "not re-trained", *shot,
                     f"{t.params / 1e6:.3f}M", f"{t.madds / 1e6:.1f}", f"<code>{t.cell.short()}</code>"])
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


CAPTIONS = {
    "progress": "Each grey dot is a cell's proxy score, in the order the trials were numbered; the blue line is the "
                "best so far, the star the cell the search chose.",
    "histogram": "Each bar counts the cells by their proxy score; the dashed line is a lone 1x1 convolution: the "
                 "cells to its right gain from their context.",
    "pareto": "Each dot is a cell (numbered by trial), its proxy score against the multiply-adds of its context "
              "module; the red line joins the cells that no other beats on both; the star is the chosen cell.",
    "latency": "Each dot is a cell, its proxy score against its latency on the device; the red line joins the cells "
               "that no other beats on both; the star is the chosen cell.",
    "correlation": "Each dot is a re-ranked cell, its proxy score against its end-to-end score: where the proxy "
                   "ranks cells as full training does, the dots rise from left to right.",
    "oneshot": "Each dot is a cell the supernet screened and the proxy then trained: where the one-shot score "
               "ranks cells as the proxy does, the dots rise from left to right.",
    "importance": "Each bar is a branch's share of the weights that the cell's final 1x1 projection gives its "
                  "output.",
}
"""One line under each plot: what it shows and how to read it."""
CELL_KEY = ("F is the backbone's feature map; each box a branch Yi with its operation (s6x3: a 3x3 separable "
            "convolution at rate 6x3; p4x2: pyramid pooling on a 4x2 grid; 1x1: a 1x1 convolution) and an arrow from "
            "its input; every branch is concatenated and projected by a 1x1 convolution.")


def _correlation_text(what: str, count: int, rho: float | None, extra: str = "") -> str:
    """A rank correlation in words, or why there is none."""
    if count < MIN_PAIRS or rho is None:
        return f"{what}: {count} cell{'s' * (count != 1)} scored both ways, too few for a rank correlation to say " \
               f"anything (it needs {MIN_PAIRS}, with scores that are not all equal)."
    return f"{what}: Spearman rho = {rho:.3f} over {count} cells{extra}."


def _duration(seconds: float | None) -> str:
    if not seconds:
        return "an unrecorded time"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else \
        f"{seconds:.0f} s"


def _found(summary: ReportSummary, best: TrialRecord, full: dict[int, float], links: dict[str, str]) -> str:
    """What was found: the chosen cell, its scores, its cost and its files."""
    retrained = summary.retrained_iterations.get(str(best.number))
    scores = f"proxy val mIoU {best.values[0] * 100:.2f}%"
    if best.number in full:
        scores += f", re-trained end to end {full[best.number] * 100:.2f}%" + (
            f" after {retrained:,} iterations" if retrained else "")
    how = "by its re-trained score, the best of the re-ranked cells" if full else "by its proxy score"
    files = " · ".join(f'<a href="{href}">{name}</a>' for name, href in links.items())
    return (f"<p><b>What it found.</b> Trial {best.number}, chosen {how}: {scores}; its context module has "
            f"{best.params / 1e6:.3f}M parameters and {best.madds / 1e6:.1f}M multiply-adds at the proxy's feature "
            f"size. {files}</p>")


def _ran(summary: ReportSummary) -> str:
    """How the search ran."""
    how, states = summary.search, summary.trials
    proxy = how.get("proxy", {})
    counted = ", ".join(f"{v} {k}" for k, v in states.items() if v)
    backbone = f"{how['backbone']} features ({how['weights'] or 'random weights'})" if how.get("backbone") else \
        "cached backbone features"
    startup = f", the first {how['startup']} uniform" if how.get("startup") else ""
    return (f"<p><b>How.</b> Sampler <code>{how.get('sampler')}</code>{startup}; {how.get('trials')} proxy trials "
            f"wanted ({counted}), trained by {how.get('workers')} worker process(es) in "
            f"{_duration(how.get('wall_s'))} of wall time, {_duration(how.get('compute_s'))} of training in all. "
            f"Each cell trained {proxy.get('iterations')} proxy steps (batch {proxy.get('batch_size')}, "
            f"{proxy.get('optimizer')}, learning rate {proxy.get('lr')}, {proxy.get('filters')} filters) on "
            f"{backbone}.</p>")


def _trust(summary: ReportSummary) -> str:
    """How far to trust the pick: the proxy's noise, the re-ranking's length, the rank correlation."""
    parts = ["This study trained each cell once, so the proxy's own noise is not measured here; on densecell's "
             "synthetic data two trainings of one cell differ by about 1.7 points of mIoU (Spearman 0.80 between "
             "them), and smaller differences between cells are not evidence."]
    iterations = sorted(set(summary.retrained_iterations.values()))
    if summary.reranked and iterations:
        parts.append(f"{summary.reranked} cell(s) were re-trained end to end for "
                     f"{' / '.join(f'{i:,}' for i in iterations)} iterations: a short re-training ranks cells by how "
                     "fast they learn, not by where they would end (the paper re-trains to convergence), so its "
                     "scores may sit below the proxy's and are for ranking only.")
    elif summary.reranked:
        parts.append(f"{summary.reranked} cell(s) were re-trained end to end (their runs are not beside this report, "
                     "so the length of the re-training is not known here).")
    else:
        parts.append("No cell was re-trained end to end: the choice rests on the proxy alone.")
    parts.append(_correlation_text("Proxy against re-training", summary.reranked, summary.spearman_rho,
                                   " (the paper: 0.47)"))
    if summary.learned_nothing:
        parts.append(f"Trial(s) {', '.join(map(str, summary.learned_nothing))} scored no better than a lone 1x1 "
                     "convolution: they learned no context.")
    return "<p><b>How far to trust it.</b> " + " ".join(parts) + "</p>"


def _links(out: Path, best: TrialRecord, trials: list[TrialRecord], search_run: Path) -> dict[str, str]:
    """The files beside the report, as links relative to it."""
    links = {"best_cell.json": "best_cell.json",
             "its card": f"cards/{rank_name(trials.index(best) + 1, best.number)}/README.md",
             "summary.json": "summary.json"}
    checkpoint = checkpoint_path(rerank_run(search_run, best.number))
    if checkpoint.is_file():
        links["its re-trained checkpoint"] = Path(os.path.relpath(checkpoint, out)).as_posix()
    return links


def _markdown(summary: ReportSummary, best: TrialRecord, table: list[str], figures: dict[str, Path],
              full: dict[int, float], links: dict[str, str]) -> str:
    scores = summary.proxy_miou
    baseline = scores["baseline_1x1"]
    lines = [f"# Search report: {summary.study}", "",
             '<div class="facts">', _found(summary, best, full, links), _ran(summary), _trust(summary), "</div>", ""]
    best_drawing = next((path for name, path in figures.items() if name.startswith("cell ")
                         and name == f"cell {summary.best_rank}"), None)
    if best_drawing is not None:
        lines += [f'<img class="best-cell" src="{best_drawing.name}" alt="the chosen cell">', "",
                  f"*The chosen cell. {CELL_KEY}*", ""]

    def show(name: str, heading: str, *text: str) -> None:
        if name in figures:
            lines.extend([f"## {heading}", "", *text, *([""] if text else []), f"![{heading}]({figures[name].name})",
                          "", f"*{CAPTIONS[name]}*", ""])

    show("progress", "The search over time")
    show("histogram", "The proxy scores", f"Proxy val mIoU: best {scores['best'] * 100:.2f}%, median "
         f"{scores['median'] * 100:.2f}%, worst {scores['worst'] * 100:.2f}%" + (
             f"; a lone 1x1 convolution (no context) {baseline * 100:.2f}%." if baseline is not None else "."))
    show("pareto", "Accuracy against cost")
    show("correlation", "The proxy against end-to-end training",
         _correlation_text("Re-ranked cells", summary.reranked, summary.spearman_rho, " (the paper: 0.47)"))
    show("oneshot", "The one-shot screen", _correlation_text(
        f"{summary.oneshot_cells} cells scored by the supernet; one-shot against proxy", summary.oneshot_pairs,
        summary.oneshot_rho, f", top-5 overlap {summary.oneshot_top5}/5" if summary.oneshot_top5 is not None
        else ""))
    if summary.branch_importance:
        total = sum(summary.branch_importance) or 1.0
        shares = [v / total for v in summary.branch_importance]
        listed = ", ".join(f"{branch_label(i)} {100 * v:.0f}%" for i, v in enumerate(shares))
        if max(shares) - min(shares) < UNIFORM_IMPORTANCE:
            show("importance", "The chosen cell's branches", f"Each branch's share of the projection's weights: "
                 f"{listed}. They weigh about the same: the projection singles no branch out, so these shares say "
                 "nothing about which branch matters.")
        else:
            top = max(range(len(shares)), key=shares.__getitem__)
            show("importance", "The chosen cell's branches", f"Each branch's share of the projection's weights: "
                 f"{listed}; the trained model leans most on {branch_label(top)}.")
    show("latency", "The latency front", _latency_text(summary))
    lines += ["## The latency front", "", "This study did not measure latency (it optimised "
              f"{'the proxy mIoU' if summary.search.get('sampler') != 'nsga2' else 'two objectives'} only); a "
              "study with a latency objective shows its proxy mIoU against latency here.", ""] \
        if "latency" not in figures else []
    lines += ["## The best cells", "", '<div class="scroll" markdown="1">', "", *table, "", "</div>", "",
              "*Re-trained: the end-to-end score of the cells the search re-ranked (the others were not re-trained). "
              "Cells are written as branches Yi = operation(input).*", ""]
    for name, path in figures.items():
        if name.startswith("cell ") and path != best_drawing:
            lines += [f"![{name}]({path.name})", "",
                      f"*Proxy rank {name.removeprefix('cell ')}; in orange, the branches that differ from the "
                      "chosen cell's.*", ""]
    return "\n".join(lines) + "\n"


UNIFORM_IMPORTANCE = 0.05
"""Branch shares that differ by less than this (5 points) are reported as uniform."""


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
             stamp: str, search: dict[str, Any], retrained: dict[str, int]) -> ReportSummary:
    states = state_counts(study)
    oneshot = states.pop("oneshot")
    baseline = record.baseline(study)
    return ReportSummary(
        study=study.study_name, trials=states, best_trial=best.number,
        best_by="re-trained mIoU" if record.full_scores(study) else "proxy mIoU",
        best_cell=best.cell.to_records(), **facts,
        oneshot_cells=oneshot, proxy_miou=score_summary([t.values[0] for t in trials]) | {"baseline_1x1": baseline},
        search=search, retrained_iterations=retrained, best_rank=trials.index(best) + 1,
        learned_nothing=[] if baseline is None else [t.number for t in trials if t.values[0] <= baseline + 1e-3],
        fingerprint=stamp)


def write_report(study: optuna.Study, out_dir: str | Path, top: int = 10, draw: int = 3,
                 search_run: Path | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, the plots, ``summary.json`` and ``best_cell.json`` into
    ``out_dir/report``; ``search_run`` is the search's run folder, whose re-ranking runs give the best cell's
    re-training length and branch importance (default ``out_dir``)."""
    out = make_dirs(Path(out_dir) / "report")
    trials = completed_trials(study)
    if not trials:
        raise InputError(f"study {study.study_name!r} has no completed trials yet")
    stamp = fingerprint(study)
    if (current := _current(out, stamp)) is not None:
        return current
    run = Path(search_run or out_dir)
    full = record.full_scores(study)
    best = next(t for t in trials if t.number == max(full, key=full.get)) if full else trials[0]
    search = _how(study)
    figures, facts = _figures(study, trials, best, out, draw, run, search["startup"])
    summary = _summary(study, trials, best, facts, stamp, search, _retrained(full, run))
    markdown_text = _markdown(summary, best, _table(trials, summary, full, top), figures, full,
                              _links(out, best, trials, run))
    write_text(out / "best_cell.json", best.cell.to_json())
    write_text(out / "report.md", markdown_text)
    body = markdown.markdown(markdown_text, extensions=["tables", "md_in_html"])
    write_text(out / "report.html", HTML.substitute(title=html.escape(study.study_name), body=body))
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


def correlations(report_dir: str | Path) -> list[Correlation]:
    """A written report's rank correlations, with their plots (it is read, not written: the report stage writes it,
    under its folder's lock): proxy against end-to-end mIoU of the re-ranked cells, and one-shot against proxy mIoU
    after a one-shot screen. Fewer than ``MIN_PAIRS`` (5) cells scored two ways is an
    :class:`~densecell.core.errors.InputError`."""
    report_dir = Path(report_dir)
    summary = ReportSummary.read(report_dir)
    if summary is None:
        raise InputError(f"{report_dir}: no report here (densecell report writes it)")
    outputs = summary.paths(report_dir)
    found = []
    if summary.reranked >= MIN_PAIRS:
        found.append(Correlation("proxy vs end-to-end", summary.reranked, summary.spearman_rho, None,
                                 outputs["correlation"]))
    if summary.oneshot_pairs >= MIN_PAIRS:
        found.append(Correlation("one-shot vs proxy", summary.oneshot_pairs, summary.oneshot_rho,
                                 summary.oneshot_top5, outputs["oneshot"]))
    if not found:
        raise InputError(f"study {summary.study!r}: need at least {MIN_PAIRS} cells scored two ways (re-ranked, or "
                         f"screened one-shot and trained on the proxy), it has {summary.reranked}")
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
    into ``plot`` when given). A checkpoint of another head is a :class:`~densecell.core.errors.CheckpointError`."""
    if plot is not None:
        check_figure_path(plot)
    run = load_run(checkpoint)
    if run.model.config.get("head") != "dpc":
        raise CheckpointError(f"{checkpoint}: not a DPC model (head {run.model.config.get('head')!r})")
    values = run.model.head.branch_importance()
    if plot is not None:
        importance_plot(run.model.head.cell, values, Path(plot), str(checkpoint))
    return run.model.head.cell, values
