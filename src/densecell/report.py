"""The search report: score histogram (paper Fig. 4a), Pareto front, proxy-vs-full and one-shot-vs-proxy
correlations, the best cells drawn as graphs with their branch importance (paper Fig. 5b), and a table of the best
cells; written as Markdown, turned into HTML by the ``markdown`` library, next to their PNGs and a ``summary.json``.

A report is written once for a study as it stands: run again on an unchanged study it finds ``summary.json``'s
fingerprint current and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from string import Template
from typing import Any

import optuna
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import record
from .errors import InputError
from .files import atomic_path, make_dirs, write_text
from .ranking import describe_rho, spearman, top_overlap
from .record import TrialRecord
from .search import completed_trials, proxy_full_pairs
from .space import BACKBONE, Cell, branch_label


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (mIoU up, cost down), sorted by cost."""
    front = [i for i, (miou, cost) in enumerate(points)
             if not any(m >= miou and c <= cost and (m, c) != (miou, cost) for m, c in points)]
    return sorted(front, key=lambda i: points[i][1])


def draw_cell(cell: Cell, path: Path, title: str = "") -> Path:
    """The cell as a DAG: F on the left, each branch placed one column right of its input, all into the concat."""
    depth = {BACKBONE: 0}
    for i, branch in enumerate(cell):
        depth[i] = depth[branch.input] + 1
    columns: dict[int, list[int]] = {}
    for i in range(len(cell)):
        columns.setdefault(depth[i], []).append(i)
    position = {BACKBONE: (0.0, 0.0)}
    for column, members in columns.items():
        for row, i in enumerate(members):
            position[i] = (float(column), row - (len(members) - 1) / 2)
    out_x = max(depth.values()) + 1.0
    fig, ax = _figure((2.2 * (out_x + 1), 1.0 + 1.1 * max(len(m) for m in columns.values())))
    for i, branch in enumerate(cell):
        (x0, y0), (x1, y1) = position[branch.input], position[i]
        ax.annotate("", xy=(x1 - 0.22, y1), xytext=(x0 + 0.22, y0), arrowprops={"arrowstyle": "->", "color": "0.3"})
        ax.annotate("", xy=(out_x - 0.3, 0), xytext=(x1 + 0.22, y1),
                    arrowprops={"arrowstyle": "->", "color": "0.75", "linestyle": "dotted"})
        ax.text(x1, y1, f"{branch_label(i)}\n{branch.op}", ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "#dde8f5", "edgecolor": "#4a6fa5"})
    ax.text(0, 0, "F", ha="center", va="center", fontsize=10, bbox={"boxstyle": "circle", "facecolor": "#f5e6cc"})
    ax.text(out_x, 0, "concat\n1x1", ha="center", va="center", fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "#e5f5dd"})
    ax.set_xlim(-0.6, out_x + 0.6)
    ys = [y for _, y in position.values()]
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


HTML = Template("""<!doctype html><meta charset="utf-8"><title>$title</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:2px 8px;
border-bottom:1px solid #ddd;font-size:13px}img{max-width:48%;margin:4px}</style>
$body
""")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    return path


def _figure(size: tuple[float, float]) -> tuple[Figure, Axes]:
    """A figure of its own (matplotlib's object API: no pyplot, so the caller's backend and figures are left
    alone)."""
    fig = Figure(figsize=size)
    return fig, fig.subplots()


def _histogram(scores: list[float], baseline: float | None, path: Path) -> Path:
    fig, ax = _figure((5, 3.2))
    ax.hist([s * 100 for s in scores], bins=min(30, max(5, len(scores) // 3)), color="#4a6fa5")
    if baseline is not None:
        ax.axvline(baseline * 100, color="#c0392b", linestyle="--", label="lone 1x1 conv (no context)")
        ax.legend(fontsize=8)
    ax.set_xlabel("proxy val mIoU (%)")
    ax.set_ylabel("cells")
    ax.set_title(f"{len(scores)} cells on the proxy task (cf. paper Fig. 4a)")
    return _save(fig, path)


def _pareto(trials: list[TrialRecord], path: Path) -> tuple[Path, list[int]]:
    points = [(t.values[0], float(t.madds)) for t in trials]
    front = pareto_front(points)
    fig, ax = _figure((5, 3.2))
    ax.scatter([c / 1e6 for _, c in points], [m * 100 for m, _ in points], s=12, color="0.6", label="cells")
    ax.plot([points[i][1] / 1e6 for i in front], [points[i][0] * 100 for i in front], "o-", color="#c0392b",
            label="Pareto front")
    ax.set_xlabel("context-module MAdds at the proxy size (M)")
    ax.set_ylabel("proxy val mIoU (%)")
    ax.legend(fontsize=8)
    return _save(fig, path), [trials[i].number for i in front]


def scatter(pairs: Sequence[tuple[float, float]], x_label: str, y_label: str, path: Path, title: str = "") -> Path:
    """A rank-correlation plot: one point per cell, Spearman's rho and the top-5 overlap in the title."""
    fig, ax = _figure((4.2, 3.4))
    ax.scatter([x * 100 for x, _ in pairs], [y * 100 for _, y in pairs], s=16, color="#4a6fa5")
    ax.set_xlabel(f"{x_label} (%)")
    ax.set_ylabel(f"{y_label} (%)")
    summary = f"{len(pairs)} cells, Spearman rho = {describe_rho(spearman(pairs), 2)}, top-5 overlap " \
              f"{top_overlap(pairs)}/5"
    ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=9)
    return _save(fig, path)


def _importance(trial: TrialRecord, checkpoints: Path | None, path: Path) -> tuple[Path | None, list[float]]:
    """Branch importance of the best cell from its re-ranking checkpoint, if there is one."""
    checkpoint = checkpoints / f"trial-{trial.number}" / "checkpoint.pt" if checkpoints else None
    if checkpoint is None or not checkpoint.is_file():
        return None, []
    from .checkpoint import load_run

    values = load_run(checkpoint).model.head.branch_importance()
    return importance_plot(trial.cell, values, path, f"trial {trial.number}"), values


def importance_plot(cell: Cell, values: Sequence[float], path: Path, title: str = "") -> Path:
    """Paper Fig. 5b: the L1 norm of the projection weights that read each branch."""
    fig, ax = _figure((4.6, 2.8))
    labels = [f"{branch_label(i)}\n{b.op}" for i, b in enumerate(cell)]
    ax.bar(range(len(values)), values, color="#4a6fa5")
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylabel("L1 norm of projection weights")
    ax.set_title(f"branch importance (cf. paper Fig. 5b) {title}".strip(), fontsize=9)
    return _save(fig, path)


def _figures(study: optuna.Study, trials: list[TrialRecord], best: TrialRecord, out: Path, draw: int,
             checkpoints: Path | None) -> tuple[dict[str, Path], dict[str, Any]]:
    figures = {"histogram": _histogram([t.values[0] for t in trials], record.baseline(study), out / "histogram.png")}
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
    importance_path, facts["branch_importance"] = _importance(best, checkpoints, out / "importance.png")
    if importance_path:
        figures["importance"] = importance_path
    for rank, trial in enumerate(trials[:draw]):
        figures[f"cell {rank + 1}"] = draw_cell(trial.cell, out / f"cell-{rank + 1}.png",
                                                f"proxy rank {rank + 1} (trial {trial.number}): "
                                                f"{trial.values[0] * 100:.1f}%")
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


def _markdown(study: optuna.Study, summary: dict[str, Any], table: list[str], figures: dict[str, Path]) -> str:
    scores, states = summary["proxy_miou"], summary["trials"]
    baseline = scores["baseline_1x1"]
    lines = [f"# Search report: {study.study_name}", "",
             f"Trials: {', '.join(f'{k} {v}' for k, v in states.items() if v)}. Best cell (by {summary['best_by']}): "
             f"trial {summary['best_trial']}, saved as `best_cell.json`.", "",
             f"Proxy mIoU: best {scores['best'] * 100:.2f}%, median {scores['median'] * 100:.2f}%, worst "
             f"{scores['worst'] * 100:.2f}%" + (f"; a lone 1x1 convolution, no context: {baseline * 100:.2f}%."
                                                if baseline is not None else "."), ""]
    if summary["reranked"]:
        rho = summary["spearman_rho"]
        lines += [f"Proxy fidelity: Spearman rho = {rho if rho is None else round(rho, 3)} between proxy and "
                  f"end-to-end mIoU over {summary['reranked']} re-ranked cells (paper: rho >= 0.4).", ""]
    if summary["oneshot_pairs"]:
        rho = summary["oneshot_rho"]
        lines += [f"One-shot screen: {summary['oneshot_cells']} cells scored by the supernet; Spearman rho = "
                  f"{rho if rho is None else round(rho, 3)} between one-shot and proxy mIoU over "
                  f"{summary['oneshot_pairs']} cells, top-5 overlap {summary['oneshot_top5']}/5.", ""]
    if summary["branch_importance"]:
        values = ", ".join(f"{branch_label(i)} {v:.1f}" for i, v in enumerate(summary["branch_importance"]))
        lines += [f"Branch importance of the best cell (L1 norm of its projection weights): {values}.", ""]
    return "\n".join(lines + table + [""] + [f"![{name}]({path.name})" for name, path in figures.items()]) + "\n"


def fingerprint(study: optuna.Study) -> str:
    """What the report depends on: the completed trials and their scores, the re-ranking and the baseline."""
    state = [[t.number, list(t.values), t.oneshot_miou] for t in completed_trials(study)]
    facts = [state, sorted(record.full_scores(study).items()), record.baseline(study),
             len(record.records(study, stage="oneshot"))]
    return hashlib.sha1(json.dumps(facts).encode()).hexdigest()


def _current(out: Path, stamp: str) -> dict[str, Path] | None:
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if summary.get("fingerprint") != stamp:
        return None
    return {name: out / file for name, file in summary["files"].items()}


def report_is_current(study: optuna.Study, out_dir: str | Path) -> bool:
    """Whether ``out_dir/report`` already shows the study as it stands."""
    return _current(Path(out_dir) / "report", fingerprint(study)) is not None


def write_report(study: optuna.Study, out_dir: str | Path, top: int = 10, draw: int = 3,
                 checkpoints: Path | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, the plots, ``summary.json`` and ``best_cell.json`` into
    ``out_dir/report``; ``checkpoints`` is the folder of the re-ranking runs (default ``out_dir/rerank``)."""
    out = make_dirs(Path(out_dir) / "report")
    trials = completed_trials(study)
    if not trials:
        raise InputError(f"study {study.study_name!r} has no completed trials yet")
    stamp = fingerprint(study)
    if (current := _current(out, stamp)) is not None:
        return current
    full = record.full_scores(study)
    best = next(t for t in trials if t.number == max(full, key=full.get)) if full else trials[0]
    figures, facts = _figures(study, trials, best, out, draw, checkpoints or Path(out_dir) / "rerank")
    scores = sorted(t.values[0] for t in trials)
    states = {state.name.lower(): 0 for state in optuna.trial.TrialState}
    for t in record.records(study):
        states[t.state.name.lower()] += 1
    summary = {"study": study.study_name, "trials": states, "best_trial": best.number,
               "best_by": "end-to-end mIoU (re-ranking)" if full else "proxy mIoU",
               "best_cell": best.cell.to_records(), **facts,
               "oneshot_cells": len(record.records(study, (optuna.trial.TrialState.COMPLETE,), stage="oneshot")),
               "proxy_miou": {"best": scores[-1], "median": scores[len(scores) // 2], "worst": scores[0],
                              "baseline_1x1": record.baseline(study)}}
    markdown_text = _markdown(study, summary, _table(trials, full, top), figures)
    write_text(out / "best_cell.json", best.cell.to_json())
    write_text(out / "report.md", markdown_text)
    write_text(out / "report.html", _html(study.study_name, markdown_text))
    outputs = {"report": out / "report.md", "html": out / "report.html", "best_cell": out / "best_cell.json",
               **figures}
    summary |= {"fingerprint": stamp, "files": {name: path.name for name, path in outputs.items()}}
    write_text(out / "summary.json", json.dumps(summary, indent=1))
    return outputs


def _html(title: str, markdown_text: str) -> str:
    import html

    import markdown

    return HTML.substitute(title=html.escape(title), body=markdown.markdown(markdown_text, extensions=["tables"]))
