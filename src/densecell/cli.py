"""The ``densecell`` command line: a thin typer skin over the library; every command is one library call."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.table import Table

from . import cost as costs
from .cell import DensePredictionCell
from .model import build_model, create_backbone
from .space import PAPER_GRIDS, PAPER_NUM_BRANCHES, PAPER_RATES, PRESETS, SearchSpace, load_cell

app = typer.Typer(help="Dense Prediction Cells: search space, heads, cost, export.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
cell_app = typer.Typer(help="Inspect cells (presets, JSON files).", no_args_is_help=True)
app.add_typer(cell_app, name="cell")

console = Console()
errors = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)


class Format(str, Enum):
    table = "table"
    json = "json"


class Head(str, Enum):
    dpc = "dpc"
    aspp = "aspp"


def parse_size(text: str) -> tuple[int, int]:
    """'1025x2049' or '513' -> (H, W)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a size like 513 or 1025x2049") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise typer.BadParameter(f"{text!r} is not a size like 513 or 1025x2049")
    return parts[0], parts[1]


def parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers") from None


ImageSize = Annotated[str, typer.Option("--image-size", help="Input image size, HxW (or one number for square).")]
OutputStride = Annotated[int, typer.Option("--output-stride", help="Backbone output stride: 16 or 8.")]
CellSpec = Annotated[str, typer.Option("--cell", help=f"Preset ({', '.join(PRESETS)}), JSON file or JSON text.")]


def millions(n: float) -> str:
    return f"{n / 1e6:.3f}M"


def billions(n: float) -> str:
    return f"{n / 1e9:.3f}B"


@app.command()
def space(
    branches: Annotated[int, typer.Option(help="Number of branches B.")] = PAPER_NUM_BRANCHES,
    rates: Annotated[str, typer.Option(help="Atrous rates per axis.")] = ",".join(map(str, PAPER_RATES)),
    grids: Annotated[str, typer.Option(help="Pyramid-pooling grid sizes per axis.")] = ",".join(map(str, PAPER_GRIDS)),
    seed: Annotated[int, typer.Option(help="Seed of the sampled example cell.")] = 0,
    operations: Annotated[bool, typer.Option("--operations", help="List every operation.")] = False,
) -> None:
    """Size of the search space, its operations and a uniformly sampled cell."""
    search_space = SearchSpace(branches, parse_ints(rates), parse_ints(grids))
    ops = search_space.operations()
    console.print(f"branches B = {search_space.num_branches}, operations |OP| = {len(ops)} "
                  f"(1 conv1x1 + {len(search_space.rates) ** 2} sep3x3 + {len(search_space.grids) ** 2} pool)")
    console.print(f"cells = B! x |OP|^B = {search_space.size():,} ({search_space.size():.3e})")
    if operations:
        console.print(", ".join(map(str, ops)))
    cell = search_space.sample(seed)
    console.print(f"sampled cell (seed {seed}): {cell}")
    print(cell.to_json())


@cell_app.command("show")
def cell_show(
    spec: Annotated[str, typer.Argument(help=f"Preset ({', '.join(PRESETS)}), JSON file or JSON text.")],
    backbone: Annotated[str, typer.Option(help="timm backbone whose last feature feeds the cell.")] = "xception71",
    image_size: ImageSize = "1025x2049",
    output_stride: OutputStride = 16,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """The branches of a cell, who feeds whom, and the cost of each branch (paper convention)."""
    cell = load_cell(spec)
    size = parse_size(image_size)
    with torch.device("meta"):
        channels = create_backbone(backbone, output_stride).feature_info.channels()[-1]
        head = DensePredictionCell(cell, channels, output_stride=output_stride)
        shape = (1, channels, *costs.feature_size(size, output_stride))
        per_branch = costs.branch_costs(head, shape)
        whole = costs.head_cost(head, channels, size, output_stride)
    rows = [
        {"branch": i, "input": b.input, "op": str(b.op), "params": c.params, "madds": c.madds}
        for i, (b, c) in enumerate(zip(cell, per_branch))
    ]
    if fmt is Format.json:
        print(json.dumps({"cell": cell.to_records(), "branches": rows, "head_params": whole.params,
                          "head_madds": whole.madds}, indent=2))
        return
    table = Table(title=f"{spec}: {backbone} ({channels} ch), {size[0]}x{size[1]}, OS {output_stride}")
    for column in ("branch", "input", "operation", "params", "MAdds"):
        table.add_column(column, justify="right" if column in ("params", "MAdds") else "left")
    for row in rows:
        source = "F (backbone)" if row["input"] < 0 else f"Y{row['input'] + 1}"
        table.add_row(f"Y{row['branch'] + 1}", source, row["op"], millions(row["params"]), billions(row["madds"]))
    context = sum(per_branch, costs.Cost(0, 0))
    table.add_section()
    table.add_row("context", "", "branches (paper Table 1)", millions(context.params), billions(context.madds))
    table.add_row("head", "", "+ projection and BN", millions(whole.params), billions(whole.madds))
    console.print(table)


@app.command()
def cost(
    paper_table: Annotated[bool, typer.Option("--paper-table", help="Reproduce the paper's Table 1.")] = False,
    backbone: Annotated[str, typer.Option(help="timm backbone.")] = "xception71",
    head: Annotated[Head, typer.Option(help="Context head.")] = Head.dpc,
    cell: CellSpec = "cityscapes-top1",
    image_size: ImageSize = "1025x2049",
    output_stride: OutputStride = 16,
    decoder: Annotated[bool, typer.Option(help="Include the DeepLabv3+ decoder.")] = True,
    latency: Annotated[bool, typer.Option("--latency", help="Also time it on the CPU (real tensors).")] = False,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Parameters and multiply-adds of a head and a whole model, or the paper's Table 1 reproduced."""
    size = parse_size(image_size)
    if paper_table:
        rows = costs.paper_table(size, latency=latency)
        if fmt is Format.json:
            print(json.dumps(rows, indent=2))
        else:
            print_paper_table(rows, size)
        return
    options: dict[str, Any] = {"backbone": backbone, "head": head.value, "cell": load_cell(cell),
                               "output_stride": output_stride, "decoder": decoder}
    with torch.device("meta"):
        model = build_model(**options)
        channels = model.head.in_channels
        rows = [
            {"part": "context module (paper convention)",
             **vars(costs.context_module_cost(model.head, size, output_stride))},
            {"part": "head", **vars(costs.head_cost(model.head, channels, size, output_stride))},
            {"part": "whole model", **vars(costs.model_cost(model, size))},
        ]
    if latency:
        rows[-1]["latency_s"] = costs.measure_latency(build_model(**options), torch.randn(1, 3, *size), repeats=3)
    rows = [{k: v for k, v in row.items() if v is not None} for row in rows]
    if fmt is Format.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{backbone} + {head.value}, {size[0]}x{size[1]}, OS {output_stride}")
    for column in ("part", "params", "MAdds") + ("CPU latency",) * latency:
        table.add_column(column, justify="left" if column == "part" else "right")
    for row in rows:
        seconds = [f"{row['latency_s'] * 1e3:.0f} ms" if "latency_s" in row else ""] * latency
        table.add_row(row["part"], millions(row["params"]), billions(row["madds"]), *seconds)
    console.print(table)


def print_paper_table(rows: list[dict[str, Any]], size: tuple[int, int]) -> None:
    timed = "latency_s" in rows[0]
    table = Table(title=f"Paper Table 1, context module only, OS 16, {size[0]}x{size[1]}")
    columns = ["backbone", "head", "params", "paper", "ratio", "MAdds", "paper", "ratio"] + (["CPU ms"] * timed)
    for column in columns:
        table.add_column(column, justify="left" if column in ("backbone", "head") else "right")
    for row in rows:
        cells = [row["backbone"], row["head"], millions(row["params"]), millions(row["paper_params"]),
                 f"{row['params_ratio']:.3f}", billions(row["madds"]), billions(row["paper_madds"]),
                 f"{row['madds_ratio']:.3f}"]
        if timed:
            cells.append(f"{row['latency_s'] * 1e3:.0f}")
        table.add_row(*cells)
    console.print(table)


@app.command()
def export(
    output: Annotated[Path, typer.Argument(help="Where to write the .onnx file.")],
    backbone: Annotated[str, typer.Option(help="timm backbone.")] = "mobilenetv2_100",
    head: Annotated[Head, typer.Option(help="Context head.")] = Head.dpc,
    cell: CellSpec = "cityscapes-top1",
    num_classes: Annotated[int, typer.Option(help="Number of classes.")] = 19,
    image_size: ImageSize = "513x513",
    output_stride: OutputStride = 16,
    decoder: Annotated[bool, typer.Option(help="Include the DeepLabv3+ decoder.")] = True,
    check: Annotated[bool, typer.Option(help="Compare onnxruntime with PyTorch on a random image.")] = True,
) -> None:
    """Export a model to ONNX (fixed input size) and check it against onnxruntime."""
    from .export import export_onnx, onnx_max_error

    size = parse_size(image_size)
    model = build_model(backbone=backbone, head=head.value, cell=load_cell(cell), num_classes=num_classes,
                        output_stride=output_stride, decoder=decoder).eval()
    path = export_onnx(model, output, size)
    console.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB), input images [1, 3, {size[0]}, {size[1]}]")
    if check:
        error = onnx_max_error(model, path, torch.randn(1, 3, *size))
        console.print(f"onnxruntime vs PyTorch: max |difference| = {error:.2e}")
        if error > 1e-3:
            raise RuntimeError(f"{path}: onnxruntime differs from PyTorch by {error:.2e} (> 1e-3)")


Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: section.field=value.")]
DataRoot = Annotated[Path | None, typer.Option("--data-root", help="Dataset root folder (overrides data.root).")]


@contextmanager
def resumable() -> Iterator[None]:
    """Ctrl-C in a long command: one line that says how to go on, and exit code 130 (typer would exit silently)."""
    try:
        yield
    except KeyboardInterrupt as exc:
        errors.print(str(exc) or "interrupted: what was finished is saved; run the same command again to resume")
        raise typer.Exit(130) from None


@app.command()
def train(
    config: Annotated[Path | None, typer.Option("--config", help="YAML recipe, e.g. configs/cityscapes-xception71-dpc.yaml.")] = None,
    data_root: DataRoot = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its last checkpoint.")] = False,
    overrides: Overrides = None,
) -> None:
    """Train a model end to end (DeepLab recipe); under torchrun it runs DistributedDataParallel."""
    from .config import load_config
    from .train import train as run_training

    settings = load_config(config, with_data_root(overrides, data_root))
    with resumable():  # the training loop saves its state and raises with a message that says how to resume
        result = run_training(settings, resume=resume)
    if result.val_miou is not None:
        console.print(f"val mIoU {result.val_miou * 100:.2f}% after {result.iteration} iterations; "
                      f"run in {result.run_dir}")


def with_data_root(overrides: list[str] | None, data_root: Path | None) -> list[str]:
    return list(overrides or []) + ([f"data.root={data_root}"] if data_root else [])


def parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of scales like 0.75,1,1.25") from None
    if not scales or min(scales) <= 0:
        raise typer.BadParameter(f"scales must be positive, got {text!r}")
    return scales


Scales = Annotated[str, typer.Option("--scales", help="Comma-separated test scales; 'paper' = 0.75,1,...,2.")]
Flip = Annotated[bool, typer.Option("--flip", help="Also average the left-right flipped image.")]
Window = Annotated[str | None, typer.Option("--window", help="Sliding-window size HxW for large images.")]
CheckpointPath = Annotated[Path, typer.Option("--checkpoint", help="A checkpoint.pt written by densecell train.")]


def eval_settings(scales: str, window: str | None) -> tuple[tuple[float, ...], tuple[int, int] | None]:
    from .evaluate import PAPER_EVAL_SCALES

    return (PAPER_EVAL_SCALES if scales == "paper" else parse_scales(scales)), (parse_size(window) if window else None)


@app.command("eval")
def evaluate_command(
    checkpoint: CheckpointPath,
    data_root: DataRoot = None,
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "val",
    scales: Scales = "1",
    flip: Flip = False,
    window: Window = None,
    output_stride: Annotated[int | None, typer.Option("--output-stride", help="Evaluate at OS 8 or 16.")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write the per-class table as JSON here.")] = None,
) -> None:
    """mIoU and per-class IoU of a checkpoint on a split (single or multi-scale, flip, sliding window)."""
    from .checkpoint import load_model
    from .config import TrainConfig
    from .data import EvalTransform, build_dataset
    from .evaluate import evaluate

    scale_list, window_size = eval_settings(scales, window)
    model, payload = load_model(checkpoint, **({"output_stride": output_stride} if output_stride else {}))
    data = TrainConfig.model_validate(payload["config"]).data
    root = data_root or data.root
    if root is None:
        raise ValueError("no data root: pass --data-root")
    dataset = build_dataset(data.dataset, root, split, EvalTransform(), **data.dataset_options())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = evaluate(model.to(device), dataset, device, scale_list, flip, window_size)
    table = Table(title=f"{checkpoint}: {dataset.name}, {result.images} images, scales {list(scale_list)}"
                        f"{' + flip' if flip else ''}")
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    for name, iou in zip(result.classes, result.iou):
        table.add_row(name, "-" if iou != iou else f"{iou * 100:.2f}")
    table.add_section()
    table.add_row("mIoU", f"{result.miou * 100:.2f}")
    console.print(table)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result.to_dict(), indent=2))
        console.print(f"wrote {output}")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    checkpoint: CheckpointPath,
    output: Annotated[Path, typer.Option("--output", help="Folder for the PNGs.")] = Path("predictions"),
    scales: Scales = "1",
    flip: Flip = False,
    window: Window = None,
) -> None:
    """Write trainId PNGs, colour overlays and (for Cityscapes models) labelId PNGs for the benchmark server."""
    from .checkpoint import load_model
    from .data.cityscapes import train_id_to_label_id
    from .evaluate import predict_files

    scale_list, window_size = eval_settings(scales, window)
    model, payload = load_model(checkpoint)
    cityscapes = payload.get("config", {}).get("data", {}).get("dataset") == "cityscapes"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    written = predict_files(model.to(device), images, output, payload["palette"],
                            train_id_to_label_id() if cityscapes else None, scale_list, flip, window_size, device)
    console.print(f"wrote {len(written)} files for {len(images)} images to {output}")


@app.command()
def synthetic(
    root: Annotated[Path, typer.Argument(help="Where to write the dataset (Cityscapes layout).")],
    train_images: Annotated[int, typer.Option("--train", help="Training images.")] = 48,
    val_images: Annotated[int, typer.Option("--val", help="Validation images.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write the synthetic multi-scale dataset (same texture, classes told apart only by size and shape)."""
    from .data.synthetic import write_synthetic_cityscapes

    write_synthetic_cityscapes(root, train_images, val_images, seed=seed)
    console.print(f"wrote {train_images} train + {val_images} val images to {root} (Cityscapes layout)")


search_app = typer.Typer(help="The cell search: one command, or its workers and views.")
app.add_typer(search_app, name="search")
SearchConfigPath = Annotated[Path | None, typer.Option("--config", help="Search recipe, e.g. configs/search-synthetic.yaml.")]
StorageOption = Annotated[str | None, typer.Option("--storage", envvar="DENSECELL_STORAGE",
                                                   help="Study storage URL (or env DENSECELL_STORAGE).")]
StudyOption = Annotated[str | None, typer.Option("--study", help="Study name.")]


def search_config(config: Path | None, data_root: Path | None = None, overrides: list[str] | None = None) -> Any:
    from .config import load_search_config

    return load_search_config(config, with_data_root(overrides, data_root))


def open_study(config: Path | None, storage: str | None, study: str | None) -> Any:
    """The study named by a recipe, or by --storage and --study."""
    from .search import load_study

    if config is not None:
        settings = search_config(config)
        storage, study = storage or settings.storage_url, study or settings.name
    if not storage or not study:
        raise typer.BadParameter("name the study with --config, or with --storage and --study")
    return load_study(study, storage)[0]


@app.command()
def cache(
    config: SearchConfigPath = None,
    data_root: DataRoot = None,
    overrides: Overrides = None,
) -> None:
    """Cache the proxy backbone's features (warming the backbone up first if the recipe asks); resumable."""
    from .pipeline import build_feature_cache

    with resumable():
        path = build_feature_cache(search_config(config, data_root, overrides))
    console.print(f"feature cache complete in {path}")


@search_app.callback(invoke_without_command=True)
def search(
    ctx: typer.Context,
    config: SearchConfigPath = None,
    data_root: DataRoot = None,
    overrides: Overrides = None,
) -> None:
    """Cache, search, re-rank and report in one command, resuming wherever it stopped."""
    if ctx.invoked_subcommand is not None:
        return
    from .pipeline import run_pipeline

    with resumable():
        outputs = run_pipeline(search_config(config, data_root, overrides), console=console)
    console.print(f"report: {outputs['report']} (and {outputs['html'].name}); best cell: {outputs['best_cell']}")


@search_app.command("worker")
def search_worker(
    storage: StorageOption = None,
    study: Annotated[str, typer.Option("--study", help="Study name.")] = "search",
    seed: Annotated[int | None, typer.Option(help="Sampler seed of this worker (default: its pid).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if any).")] = None,
) -> None:
    """Join a study and take trials until it has its N completed trials; any number of workers, any machines."""
    from .search import run_worker

    if not storage:
        raise typer.BadParameter("--storage (or DENSECELL_STORAGE) is required")
    with resumable():
        done = run_worker(study, storage, seed, device)
    console.print(f"worker {os.getpid()} completed {done} trials")


@search_app.command("status")
def search_status(config: SearchConfigPath = None, storage: StorageOption = None, study: StudyOption = None) -> None:
    """Progress, failures and the best cells of a study."""
    from optuna.trial import TrialState

    from .search import completed_trials, full_scores, op_name
    from .space import Cell

    opened = open_study(config, storage, study)
    trials = opened.get_trials(deepcopy=False)
    states = {state: sum(t.state == state for t in trials) for state in TrialState}
    console.print(f"study {opened.study_name}: " + ", ".join(f"{state.name.lower()} {n}" for state, n in
                                                           states.items() if n))
    surplus = sum(bool(t.user_attrs.get("surplus")) for t in trials)
    if surplus:
        console.print(f"({surplus} pruned trials stepped aside because the budget was full)")
    for t in trials:
        if t.state == TrialState.FAIL:
            console.print(f"trial {t.number} failed: {t.user_attrs.get('error', 'its worker died (no heartbeat)')}")
    full = full_scores(opened)
    table = Table(title="best cells by proxy mIoU")
    for column in ("trial", "proxy mIoU %", "full mIoU %", "MAdds (M)", "s", "host", "cell (input:operation)"):
        table.add_column(column)
    for t in completed_trials(opened)[:10]:
        cell = Cell.from_json(t.user_attrs["cell"])
        wiring = " ".join(f"{'F' if b.input < 0 else f'Y{b.input + 1}'}:{op_name(b.op)}" for b in cell)
        table.add_row(str(t.number), f"{t.values[0] * 100:.2f}", f"{full[t.number] * 100:.2f}" if t.number in full
                      else "", f"{t.user_attrs['madds'] / 1e6:.1f}", f"{t.user_attrs['seconds']:.1f}",
                      str(t.user_attrs["host"]), wiring)
    console.print(table)


@search_app.command("top")
def search_top(
    k: Annotated[int, typer.Option("--k", help="How many cells.")] = 50,
    output: Annotated[Path, typer.Option("--output", help="Folder for the JSON files.")] = Path("top-cells"),
    config: SearchConfigPath = None, storage: StorageOption = None, study: StudyOption = None,
) -> None:
    """Write the k best cells (by proxy mIoU) as TF DeepLab JSON files, rank-01-trial-N.json, ..."""
    from .search import top_cells

    output.mkdir(parents=True, exist_ok=True)
    best = top_cells(open_study(config, storage, study), k)
    for rank, (trial, cell) in enumerate(best, 1):
        (output / f"rank-{rank:02d}-trial-{trial.number}.json").write_text(cell.to_json())
    console.print(f"wrote {len(best)} cells to {output}")


@app.command("rerank")
def rerank_command(
    config: SearchConfigPath = None,
    data_root: DataRoot = None,
    top: Annotated[int | None, typer.Option("--top", help="How many of the best proxy cells (default: recipe).")] = None,
    overrides: Overrides = None,
) -> None:
    """Re-train the top K proxy cells end to end and record their val mIoU in the study (resumable)."""
    from .pipeline import rerank
    from .search import load_study

    settings = search_config(config, data_root, overrides)
    with resumable():
        scores = rerank(settings, load_study(settings.name, settings.storage_url)[0], top)
    for number, miou in scores.items():
        console.print(f"trial {number}: end-to-end val mIoU {miou * 100:.2f}%")


def report_parent(config: Path | None, output: Path | None) -> Path:
    """Where report/ goes: --output, else the recipe's run folder, else here."""
    return output or (search_config(config).run_dir if config else Path("."))


@app.command()
def correlate(
    config: SearchConfigPath = None, storage: StorageOption = None, study: StudyOption = None,
    output: Annotated[Path | None, typer.Option("--output", help="Folder for the report and plot.")] = None,
) -> None:
    """Spearman rho between proxy and end-to-end mIoU of the re-ranked cells, with a scatter plot."""
    from .report import write_report
    from .search import proxy_full_pairs, spearman

    opened = open_study(config, storage, study)
    pairs = proxy_full_pairs(opened)
    if len(pairs) < 3:
        raise ValueError(f"need at least 3 re-ranked cells for a rank correlation, the study has {len(pairs)}")
    figures = write_report(opened, report_parent(config, output))
    console.print(f"Spearman rho = {spearman(pairs):.3f} over {len(pairs)} cells; plot {figures['correlation']}")


@app.command()
def report(
    config: SearchConfigPath = None, storage: StorageOption = None, study: StudyOption = None,
    output: Annotated[Path | None, typer.Option("--output", help="Folder for the report.")] = None,
) -> None:
    """Markdown + HTML report: histogram, Pareto front, correlation, best cells drawn, cost table."""
    from .report import write_report

    outputs = write_report(open_study(config, storage, study), report_parent(config, output))
    console.print(f"report: {outputs['report']} and {outputs['html']}; best cell: {outputs['best_cell']}")


def main() -> None:
    """Entry point: usage and input errors become one line on stderr and exit code 2; other failures one line and
    exit code 1. ``DENSECELL_DEBUG=1`` re-raises, for the traceback."""
    err = errors
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors, as vendored by typer
        err.print(f"error: {' '.join(exc.format_message().split())}")
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("DENSECELL_DEBUG"):
            raise
        err.print(f"error: {' '.join(str(exc).split()) or type(exc).__name__}")
        sys.exit(2 if isinstance(exc, (ValueError, OSError)) else 1)
    sys.exit(code if isinstance(code, int) else 0)
