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

import markdown
import optuna

from . import record
from .checkpoint import checkpoint_path, load_run, rerank_run
from .errors import CheckpointError, InputError
from .figures import draw_cell, figure, histogram, importance_plot, save_figure, scatter
from .files import make_dirs, write_text
from .hubcard import cell_card
from .ranking import spearman, top_overlap
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


HTML = Template("""<!doctype html><meta charset="utf-8"><title>$title</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:2px 8px;
border-bottom:1px solid #ddd;font-size:13px}img{max-width:48%;margin:4px}</style>
$body
""")


def _pareto(trials: list[TrialRecord], path: Path) -> tuple[Path, list[int]]:
    points = [(t.values[0], float(t.madds)) for t in trials]
    front = pareto_front(points)
    fig, ax = figure((5, 3.2))
    ax.scatter([c / 1e6 for _, c in points], [m * 100 for m, _ in points], s=12, color="0.6", label="cells")
    ax.plot([points[i][1] / 1e6 for i in front], [points[i][0] * 100 for i in front], "o-", color="#c0392b",
            label="Pareto front")
    ax.set_xlabel("context-module MAdds at the proxy size (M)")
    ax.set_ylabel("proxy val mIoU (%)")
    ax.legend(fontsize=8)
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
        figures[f"cell {rank + 1}"] = draw_cell(trial.cell, out / f"cell-{rank + 1}.png",
                                                f"proxy rank {rank + 1} (trial {trial.number}): "
                                                f"{trial.values[0] * 100:.1f}%")
        write_cell_card(study, trial, out / "cards" / f"rank-{rank + 1:02d}-trial-{trial.number}")
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


def _markdown(summary: ReportSummary, table: list[str], figures: dict[str, Path]) -> str:
    scores, states = summary.proxy_miou, summary.trials
    baseline = scores["baseline_1x1"]
    lines = [f"# Search report: {summary.study}", "",
             f"Trials: {', '.join(f'{k} {v}' for k, v in states.items() if v)}. Best cell (by {summary.best_by}): "
             f"trial {summary.best_trial}, saved as `best_cell.json`.", "",
             f"Proxy mIoU: best {scores['best'] * 100:.2f}%, median {scores['median'] * 100:.2f}%, worst "
             f"{scores['worst'] * 100:.2f}%" + (f"; a lone 1x1 convolution, no context: {baseline * 100:.2f}%."
                                                if baseline is not None else "."), ""]
    if summary.reranked:
        lines += [f"Proxy fidelity: Spearman rho = {_rounded(summary.spearman_rho)} between proxy and end-to-end "
                  f"mIoU over {summary.reranked} re-ranked cells (paper: rho >= 0.4).", ""]
    if summary.oneshot_pairs:
        lines += [f"One-shot screen: {summary.oneshot_cells} cells scored by the supernet; Spearman rho = "
                  f"{_rounded(summary.oneshot_rho)} between one-shot and proxy mIoU over {summary.oneshot_pairs} "
                  f"cells, top-5 overlap {summary.oneshot_top5}/5.", ""]
    if summary.branch_importance:
        values = ", ".join(f"{branch_label(i)} {v:.1f}" for i, v in enumerate(summary.branch_importance))
        lines += [f"Branch importance of the best cell (L1 norm of its projection weights): {values}.", ""]
    return "\n".join(lines + table + [""] + [f"![{name}]({path.name})" for name, path in figures.items()]) + "\n"


def _rounded(rho: float | None) -> float | None:
    return None if rho is None else round(rho, 3)


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
    scores = sorted(t.values[0] for t in trials)
    states = {state.name.lower(): 0 for state in optuna.trial.TrialState}
    for t in record.records(study):
        states[t.state.name.lower()] += 1
    return ReportSummary(
        study=study.study_name, trials=states, best_trial=best.number,
        best_by="end-to-end mIoU (re-ranking)" if record.full_scores(study) else "proxy mIoU",
        best_cell=best.cell.to_records(), **facts,
        oneshot_cells=len(record.records(study, (optuna.trial.TrialState.COMPLETE,), stage="oneshot")),
        proxy_miou={"best": scores[-1], "median": scores[len(scores) // 2], "worst": scores[0],
                    "baseline_1x1": record.baseline(study)}, fingerprint=stamp)


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
        name = f"rank-{rank:02d}-trial-{trial.number}"
        written.append(write_text(Path(folder) / f"{name}.json", trial.cell.to_json()))
        write_cell_card(study, trial, Path(folder) / "cards" / name)
    return written


def branch_importance(checkpoint: str | Path, plot: str | Path | None = None) -> tuple[Cell, list[float]]:
    """Paper Fig. 5b for a trained DPC model: its cell and the L1 norm of the projection weights per branch (drawn
    into ``plot`` when given). A checkpoint of another head is a :class:`~densecell.errors.CheckpointError`."""
    run = load_run(checkpoint)
    if run.model.config.get("head") != "dpc":
        raise CheckpointError(f"{checkpoint}: not a DPC model (head {run.model.config.get('head')!r})")
    values = run.model.head.branch_importance()
    if plot is not None:
        importance_plot(run.model.head.cell, values, Path(plot), str(checkpoint))
    return run.model.head.cell, values
