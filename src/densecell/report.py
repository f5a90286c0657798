"""The search report: score histogram (paper Fig. 4a), Pareto front, proxy-vs-full correlation, the best cells drawn
as graphs, and a cost table; written as Markdown and HTML next to their PNGs."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402

from .search import BASELINE_KEY, completed_trials, full_scores, proxy_full_pairs, spearman  # noqa: E402
from .space import BACKBONE, Cell  # noqa: E402


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
    fig, ax = plt.subplots(figsize=(2.2 * (out_x + 1), 1.0 + 1.1 * max(len(m) for m in columns.values())))
    for i, branch in enumerate(cell):
        (x0, y0), (x1, y1) = position[branch.input], position[i]
        ax.annotate("", xy=(x1 - 0.22, y1), xytext=(x0 + 0.22, y0), arrowprops={"arrowstyle": "->", "color": "0.3"})
        ax.annotate("", xy=(out_x - 0.3, 0), xytext=(x1 + 0.22, y1),
                    arrowprops={"arrowstyle": "->", "color": "0.75", "linestyle": "dotted"})
        ax.text(x1, y1, f"Y{i + 1}\n{branch.op}", ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "#dde8f5", "edgecolor": "#4a6fa5"})
    ax.text(0, 0, "F", ha="center", va="center", fontsize=10, bbox={"boxstyle": "circle", "facecolor": "#f5e6cc"})
    ax.text(out_x, 0, "concat\n1x1", ha="center", va="center", fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "#e5f5dd"})
    ax.set_xlim(-0.6, out_x + 0.6)
    ys = [y for _, y in position.values()]
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(study: optuna.Study, out_dir: str | Path, top: int = 10, draw: int = 3) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, the plots and ``best_cell.json`` into ``out_dir/report``."""
    out = Path(out_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    trials = completed_trials(study)
    if not trials:
        raise ValueError(f"study {study.study_name!r} has no completed trials yet")
    scores = [t.values[0] for t in trials]
    full = full_scores(study)
    figures: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist([s * 100 for s in scores], bins=min(30, max(5, len(scores) // 3)), color="#4a6fa5")
    baseline = study.user_attrs.get(BASELINE_KEY)
    if baseline is not None:
        ax.axvline(baseline * 100, color="#c0392b", linestyle="--", label="lone 1x1 conv (no context)")
        ax.legend(fontsize=8)
    ax.set_xlabel("proxy val mIoU (%)")
    ax.set_ylabel("cells")
    ax.set_title(f"{len(scores)} cells on the proxy task (cf. paper Fig. 4a)")
    fig.tight_layout()
    figures["histogram"] = out / "histogram.png"
    fig.savefig(figures["histogram"], dpi=110)
    plt.close(fig)

    points = [(t.values[0], float(t.user_attrs["madds"])) for t in trials]
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.scatter([c / 1e6 for _, c in points], [m * 100 for m, _ in points], s=12, color="0.6", label="cells")
    ax.plot([points[i][1] / 1e6 for i in front], [points[i][0] * 100 for i in front], "o-", color="#c0392b",
            label="Pareto front")
    ax.set_xlabel("context-module MAdds at the proxy size (M)")
    ax.set_ylabel("proxy val mIoU (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    figures["pareto"] = out / "pareto.png"
    fig.savefig(figures["pareto"], dpi=110)
    plt.close(fig)

    pairs = proxy_full_pairs(study)
    rho = spearman(pairs)
    if pairs:
        fig, ax = plt.subplots(figsize=(4, 3.2))
        ax.scatter([p * 100 for p, _ in pairs], [f * 100 for _, f in pairs], color="#4a6fa5")
        ax.set_xlabel("proxy mIoU (%)")
        ax.set_ylabel("end-to-end mIoU (%)")
        ax.set_title(f"{len(pairs)} re-ranked cells, Spearman rho = {rho:.2f}", fontsize=9)
        fig.tight_layout()
        figures["correlation"] = out / "correlation.png"
        fig.savefig(figures["correlation"], dpi=110)
        plt.close(fig)

    best_number = max(full, key=full.get) if full else trials[0].number
    best = next(t for t in trials if t.number == best_number)
    best_cell = Cell.from_json(best.user_attrs["cell"])
    (out / "best_cell.json").write_text(best_cell.to_json())
    for rank, trial in enumerate(trials[:draw]):
        figures[f"cell {rank + 1}"] = draw_cell(Cell.from_json(trial.user_attrs["cell"]), out / f"cell-{rank + 1}.png",
                                                f"proxy rank {rank + 1} (trial {trial.number}): "
                                                f"{trial.values[0] * 100:.1f}%")

    header = ["proxy rank", "trial", "proxy mIoU %", "full mIoU %", "params", "MAdds (M)", "cell"]
    rows = [[str(rank + 1), str(t.number), f"{t.values[0] * 100:.2f}",
             f"{full[t.number] * 100:.2f}" if t.number in full else "",
             f"{t.user_attrs['params'] / 1e6:.3f}M", f"{t.user_attrs['madds'] / 1e6:.1f}",
             str(Cell.from_json(t.user_attrs["cell"]))] for rank, t in enumerate(trials[:top])]
    states = {state.name.lower(): 0 for state in optuna.trial.TrialState}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name.lower()] += 1
    summary = {
        "study": study.study_name, "trials": states, "best_trial": best.number,
        "best_by": "end-to-end mIoU (re-ranking)" if full else "proxy mIoU",
        "best_cell": json.loads(best_cell.to_json()), "spearman_rho": None if math.isnan(rho) else rho,
        "reranked": len(pairs), "pareto_front_trials": [trials[i].number for i in front],
        "proxy_miou": {"best": max(scores), "median": sorted(scores)[len(scores) // 2], "worst": min(scores),
                       "baseline_1x1": baseline},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))

    md = [f"# Search report: {study.study_name}", "",
          f"Trials: {', '.join(f'{k} {v}' for k, v in states.items() if v)}. Best cell (by {summary['best_by']}): "
          f"trial {best.number}, saved as `best_cell.json`.", ""]
    md += [f"Proxy mIoU: best {max(scores) * 100:.2f}%, worst {min(scores) * 100:.2f}%"
           + (f"; a lone 1x1 convolution, no context: {baseline * 100:.2f}%." if baseline is not None else "."), ""]
    if pairs:
        md += [f"Proxy fidelity: Spearman rho = {rho:.3f} between proxy and end-to-end mIoU over {len(pairs)} "
               f"re-ranked cells (paper: rho >= 0.4).", ""]
    rows_start = "| " + " | ".join(header) + " |"
    md += [rows_start, "|" + "---|" * len(header)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    md += [""] + [f"![{name}]({path.name})" for name, path in figures.items()]
    (out / "report.md").write_text("\n".join(md) + "\n")

    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    images = "".join(f'<figure><img src="{p.name}"><figcaption>{html.escape(n)}</figcaption></figure>'
                     for n, p in figures.items())
    page = (f"<!doctype html><meta charset=utf-8><title>{html.escape(study.study_name)}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:2px 8px;"
            "border-bottom:1px solid #ddd;font-size:13px}figure{display:inline-block;margin:8px}</style>"
            f"<h1>Search report: {html.escape(study.study_name)}</h1>"
            + "".join(f"<p>{html.escape(line)}</p>" for line in md[2:md.index(rows_start)] if line)
            + "<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + f"</tr>{cells}</table>{images}")
    (out / "report.html").write_text(page)
    return {"report": out / "report.md", "html": out / "report.html", "best_cell": out / "best_cell.json",
            **figures}
