"""The ``densecell`` command line: a thin typer skin over the library. Each command parses its arguments, makes one
library call (which takes the locks it needs) and renders the result with rich; the library reports progress
through callbacks and messages through ``logging``, and its errors carry the facts, to which this module adds the
command-line advice (which flag to pass, what to run). Library imports are made inside the commands, so that
``densecell --help`` starts at once."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .cell.space import PAPER_GRIDS, PAPER_NUM_BRANCHES, PAPER_RATES, PRESETS, SearchSpace, branch_label, load_cell
from .core.registry import HEADS

app = typer.Typer(help="Dense Prediction Cells: search space, heads, cost, training, search.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
cell_app = typer.Typer(help="Inspect cells (presets, JSON files) and trained cells.", no_args_is_help=True)
app.add_typer(cell_app, name="cell")
search_app = typer.Typer(help="The cell search: one command, or its workers and views.")
app.add_typer(search_app, name="search")

console = Console()
stderr = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)


class Format(StrEnum):
    table = "table"
    json = "json"


def head_name(value: str) -> str:
    """A head of :data:`densecell.core.registry.HEADS`."""
    try:
        return HEADS.check(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


# --- rendering what the library reports ----------------------------------------------------------------------------

class RichProgress:
    """A progress callback (:mod:`densecell.core.progress`) drawn as rich bars, one per task."""

    def __init__(self) -> None:
        self.bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, event: Any) -> None:
        if event.task not in self.tasks:
            self.tasks[event.task] = self.bars.add_task(event.task, total=event.total, info="")
        self.bars.update(self.tasks[event.task], completed=event.completed, total=event.total, info=event.info)

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()


class _LogLines(logging.Handler):
    """The library's messages: information on stdout, warnings and errors on stderr, one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split())
        if record.levelno >= logging.WARNING:
            stderr.print(message)
        else:
            console.print(message, markup=False, highlight=False)


def _show_library_messages() -> None:
    logger = logging.getLogger("densecell")
    if not any(isinstance(h, _LogLines) for h in logger.handlers):
        logger.addHandler(_LogLines())
    logger.setLevel(logging.INFO)
    logger.propagate = False


# --- parsing -------------------------------------------------------------------------------------------------------

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


def parse_numbers(text: str, kind: type = int, what: str = "integers") -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of {what}") from None
    return values


ImageSize = Annotated[str, typer.Option("--image-size", help="Input image size, HxW (or one number for square).")]
OutputStride = Annotated[int, typer.Option("--output-stride", help="Backbone output stride: 16 or 8.")]
CellSpec = Annotated[str, typer.Option("--cell", help=f"Preset ({', '.join(PRESETS)}), JSON file or JSON text.")]
Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: section.field=value.")]
DataRoot = Annotated[Path | None, typer.Option("--data-root", help="Dataset root folder (overrides data.root).")]
Scales = Annotated[str, typer.Option("--scales", help="Comma-separated test scales; 'paper' = 0.75,1,...,2.")]
Flip = Annotated[bool, typer.Option("--flip", help="Also average the left-right flipped image.")]
Window = Annotated[str | None, typer.Option("--window", help="Sliding-window size HxW for large images.")]
PadTo = Annotated[str | None, typer.Option("--pad-to", help="Pad images to HxW first, as TF's eval crop (1025x2049).")]
MODEL_SOURCES = "a checkpoint.pt, its run folder, a folder written by densecell save, or a Hugging Face Hub id"
CheckpointPath = Annotated[str, typer.Option("--checkpoint", help=f"The trained model: {MODEL_SOURCES}.")]
SearchConfigPath = Annotated[Path | None, typer.Option("--config", help="Search recipe: a YAML file or a built-in "
                                                                        "name (densecell list recipes), e.g. "
                                                                        "search-synthetic.")]
StorageOption = Annotated[str | None, typer.Option("--storage", envvar="DENSECELL_STORAGE",
                                                   help="Study storage URL (or env DENSECELL_STORAGE).")]
StudyOption = Annotated[str | None, typer.Option("--study", help="Study name.")]


def millions(n: float) -> str:
    return f"{n / 1e6:.3f}M"


def billions(n: float) -> str:
    return f"{n / 1e9:.3f}B"


def with_data_root(overrides: list[str] | None, data_root: Path | None) -> list[str]:
    return list(overrides or []) + ([f"data.root={data_root}"] if data_root else [])


def search_config(config: Path | None, data_root: Path | None = None, overrides: list[str] | None = None) -> Any:
    from .config import load_search_config
    from .search import own_process

    own_process()  # this process runs the search's stages: Optuna's per-trial lines are ours to report
    return load_search_config(config, with_data_root(overrides, data_root))


def open_study(config: Path | None, storage: str | None, study: str | None) -> Any:
    """The study named by a recipe, or by --storage and --study, with its settings."""
    from .search import load_study, own_process

    own_process()

    if config is not None:
        settings = search_config(config)
        storage, study = storage or settings.storage_url, study or settings.name
    if not storage or not study:
        raise typer.BadParameter("name the study with --config, or with --storage and --study")
    return load_study(study, storage)


@contextmanager
def resumable(advice: str = "run the same command again to resume") -> Iterator[None]:
    """Ctrl-C in a long command: one line that says what was saved and how to go on, exit code 130."""
    try:
        yield
    except KeyboardInterrupt as exc:
        said = str(exc) or "interrupted; what was finished is saved"
        stderr.print(f"{said}; {advice}")
        raise typer.Exit(130) from None


@contextmanager
def shown_progress() -> Iterator[RichProgress]:
    _show_library_messages()
    with RichProgress() as progress:
        yield progress


# --- space, cells, cost, export ------------------------------------------------------------------------------------

@app.command()
def space(
    branches: Annotated[int, typer.Option(help="Number of branches B.")] = PAPER_NUM_BRANCHES,
    rates: Annotated[str, typer.Option(help="Atrous rates per axis.")] = ",".join(map(str, PAPER_RATES)),
    grids: Annotated[str, typer.Option(help="Pyramid-pooling grid sizes per axis.")] = ",".join(map(str, PAPER_GRIDS)),
    seed: Annotated[int, typer.Option(help="Seed of the sampled example cell.")] = 0,
    operations: Annotated[bool, typer.Option("--operations", help="List every operation.")] = False,
) -> None:
    """Size of the search space, its operations and a uniformly sampled cell."""
    search_space = SearchSpace(branches, parse_numbers(rates), parse_numbers(grids))
    ops = search_space.operations()
    console.print(f"branches B = {search_space.num_branches}, operations |OP| = {len(ops)} "
                  f"(1 conv1x1 + {len(search_space.rates) ** 2} sep3x3 + {len(search_space.grids) ** 2} pool)")
    console.print(f"cells = B! x |OP|^B = {search_space.size():,} ({search_space.size():.3e})")
    if operations:
        console.print(", ".join(map(str, ops)))
    cell = search_space.sample(seed)
    console.print(f"sampled cell (seed {seed}): {cell}")
    print(cell.to_json())


LISTABLE = ["samplers", "pruners", "modes", "spaces", "heads", "operations", "datasets", "rankers", "protocols",
            "cells", "recipes"]


@app.command("list")
def list_registered(
    kind: Annotated[str | None, typer.Argument(help=f"One of: {', '.join(LISTABLE)}; all when left out.")] = None,
) -> None:
    """What is registered, one line each: the names a recipe, a command or the Python API accepts, and where each
    came from (densecell, or the installed plugin that added it)."""
    from .config import recipes
    from .core.plugins import BUILTIN
    from .core.registry import REGISTRIES

    if kind is not None and kind not in LISTABLE:
        raise typer.BadParameter(f"unknown kind {kind!r} (one of {', '.join(LISTABLE)})")
    for name in [kind] if kind else LISTABLE:
        if name in REGISTRIES:
            registry = REGISTRIES[name]
            rows = [(entry, registry.source(entry), registry.describe(entry)) for entry in registry]
        elif name == "cells":
            rows = [(preset, BUILTIN, "a released cell (TF DeepLab JSON)") for preset in PRESETS]
        else:
            rows = [(recipe, BUILTIN, _first_comment(path)) for recipe, path in recipes().items()]
        if kind is None:
            console.print(f"[bold]{name}[/bold]")
        width, source_width = max(len(row[0]) for row in rows), max(len(row[1]) for row in rows)
        for entry, source, text in rows:
            console.print(f"  {entry:<{width}}  {source:<{source_width}}  {text}", highlight=False, soft_wrap=True)


def _first_comment(path: Path) -> str:
    """A recipe's first comment line: what it trains or searches."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


@cell_app.command("show")
def cell_show(
    spec: Annotated[str, typer.Argument(help=f"Preset ({', '.join(PRESETS)}), JSON file or JSON text.")],
    backbone: Annotated[str, typer.Option(help="timm backbone whose last feature feeds the cell.")] = "xception71",
    image_size: ImageSize = "1025x2049",
    output_stride: OutputStride = 16,
    fmt: Annotated[Format, typer.Option("--format", help="table (for reading) or json (for scripts).")] = Format.table,
) -> None:
    """The branches of a cell, who feeds whom, and the cost of each branch (paper convention)."""
    from .models.cost import cell_costs

    costs = cell_costs(load_cell(spec), backbone, parse_size(image_size), output_stride)
    if fmt is Format.json:
        print(json.dumps(costs.to_dict(), indent=2))
        return
    size = costs.image_size
    table = Table(title=f"{spec}: {backbone} ({costs.channels} ch), {size[0]}x{size[1]}, OS {output_stride}")
    for column in ("branch", "input", "operation", "params", "MAdds"):
        table.add_column(column, justify="right" if column in ("params", "MAdds") else "left")
    for i, (branch, cost) in enumerate(costs.branches):
        source = "F (backbone)" if branch.input < 0 else branch_label(branch.input)
        table.add_row(branch_label(i), source, str(branch.op), millions(cost.params), billions(cost.madds))
    table.add_section()
    table.add_row("context", "", "branches (paper Table 1)", millions(costs.context.params),
                  billions(costs.context.madds))
    table.add_row("head", "", "+ projection and BN", millions(costs.head.params), billions(costs.head.madds))
    console.print(table)


@cell_app.command("importance")
def cell_importance(
    checkpoint: Annotated[str, typer.Argument(help=f"A trained DPC model: {MODEL_SOURCES}.")],
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw the bars into this PNG.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table (for reading) or json (for scripts).")] = Format.table,
) -> None:
    """Branch importance of a trained cell (paper Fig. 5b): the L1 norm of the projection weights per branch."""
    from .search.report import branch_importance

    cell, values = branch_importance(checkpoint, plot)
    if fmt is Format.json:
        print(json.dumps([{"branch": i, "input": b.input, "op": str(b.op), "l1": v}
                          for i, (b, v) in enumerate(zip(cell, values))], indent=2))
        return
    table = Table(title=f"{checkpoint}: branch importance (L1 norm of projection weights)")
    for column in ("branch", "input", "operation", "L1", "share"):
        table.add_column(column, justify="right" if column in ("L1", "share") else "left")
    for i, (branch, value) in enumerate(zip(cell, values)):
        table.add_row(branch_label(i), branch_label(branch.input), str(branch.op), f"{value:.2f}",
                      f"{value / sum(values):.0%}")
    console.print(table)


@app.command()
def cost(
    paper_table: Annotated[bool, typer.Option("--paper-table", help="Reproduce the paper's Table 1.")] = False,
    backbone: Annotated[str, typer.Option(help="timm backbone.")] = "xception71",
    head: Annotated[str, typer.Option(help="Context head: dpc, aspp, or a plugin's (densecell list heads).",
                                             callback=head_name)] = "dpc",
    cell: CellSpec = "cityscapes-top1",
    image_size: ImageSize = "1025x2049",
    output_stride: OutputStride = 16,
    decoder: Annotated[bool, typer.Option(help="Include the DeepLabv3+ decoder.")] = True,
    latency: Annotated[bool, typer.Option("--latency", help="Also time it on the CPU (real tensors).")] = False,
    fmt: Annotated[Format, typer.Option("--format", help="table (for reading) or json (for scripts).")] = Format.table,
) -> None:
    """Parameters and multiply-adds of a head and a whole model, or the paper's Table 1 reproduced."""
    from .models import cost as costs

    size = parse_size(image_size)
    if paper_table:
        rows = costs.paper_table(size, latency=latency)
        print(json.dumps(rows, indent=2)) if fmt is Format.json else print_paper_table(rows, size)
        return
    parts = costs.model_costs(size, latency, backbone=backbone, head=head, cell=load_cell(cell),
                              output_stride=output_stride, decoder=decoder)
    if fmt is Format.json:
        print(json.dumps([{"part": part, **c.to_dict()} for part, c in parts.items()], indent=2))
        return
    table = Table(title=f"{backbone} + {head}, {size[0]}x{size[1]}, OS {output_stride}")
    for column in ("part", "params", "MAdds") + ("CPU latency",) * latency:
        table.add_column(column, justify="left" if column == "part" else "right")
    for part, c in parts.items():
        seconds = [f"{c.latency_s * 1e3:.0f} ms" if c.latency_s is not None else ""] * latency
        table.add_row(part, millions(c.params), billions(c.madds), *seconds)
    console.print(table)


class Runtime(StrEnum):
    torch = "torch"
    onnxruntime = "onnxruntime"


RuntimeOption = Annotated[Runtime, typer.Option(help="torch (eager PyTorch) or onnxruntime (the module exported "
                                                     "as densecell export does).")]
ProviderOption = Annotated[str, typer.Option(help="Where it runs: cpu or cuda for torch; cpu, cuda or tensorrt "
                                                  "for onnxruntime (where that onnxruntime has them).")]
ThreadsOption = Annotated[int | None, typer.Option(min=1, help="Intra-op threads (default: the runtime's).")]


@app.command()
def latency(
    head: Annotated[str, typer.Option(help="Context head: dpc, aspp, or a plugin's (densecell list heads).",
                                      callback=head_name)] = "dpc",
    cell: CellSpec = "cityscapes-top1",
    backbone: Annotated[str, typer.Option(help="timm backbone whose last feature feeds the head.")] =
    "mobilenetv2_100",
    image_size: ImageSize = "513x513",
    output_stride: OutputStride = 16,
    batch: Annotated[int, typer.Option(min=1, help="Images per call.")] = 1,
    whole: Annotated[bool, typer.Option("--whole", help="Time the whole model, not the head alone.")] = False,
    runtime: RuntimeOption = Runtime.torch,
    provider: ProviderOption = "cpu",
    threads: ThreadsOption = None,
    profile: Annotated[Path | None, typer.Option(help="A device profile: also print the cell's predicted "
                                                      "latency.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table (for reading) or json (for scripts).")] = Format.table,
) -> None:
    """A head's (or a whole model's) latency on a runtime: warm-up, repeats until the spread is small, median and
    IQR; CUDA events on a GPU."""
    from .models.latency import head_or_model, time_module
    from .models.profile import DeviceProfile

    known = DeviceProfile.read(profile) if profile is not None else None
    if provider not in (("cpu", "cuda") if runtime is Runtime.torch else ("cpu", "cuda", "tensorrt")):
        raise typer.BadParameter(f"provider {provider!r} is not one {runtime.value} has")
    module, inputs = head_or_model(head, load_cell(cell), backbone, parse_size(image_size), batch, output_stride,
                                   whole)
    device = "cuda" if runtime is Runtime.torch and provider == "cuda" else "cpu"
    timing = time_module(module.to(device), inputs.to(device), runtime.value, provider, threads)
    predicted = known.predict_ms(load_cell(cell)) if known is not None and head == "dpc" and not whole else None
    if fmt is Format.json:
        print(json.dumps(timing.to_dict() | {"predicted_ms": predicted}, indent=2))
        return
    what = "whole model" if whole else f"{head} head"
    console.print(f"{what} ({backbone}, {image_size}, OS {output_stride}, batch {batch}) on {runtime.value} "
                  f"{timing.device}, {timing.threads} threads: median {timing.median_ms:.2f} ms, IQR "
                  f"{timing.iqr_ms:.2f} ms ({timing.spread:.0%}) over {timing.repeats} calls after "
                  f"{timing.warmup} warm-up" + (f"; the profile predicts {predicted:.2f} ms" if predicted else ""),
                  highlight=False)


@app.command()
def profile(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The profile to write (JSON).")] = None,
    runtime: RuntimeOption = Runtime.torch,
    provider: ProviderOption = "cpu",
    threads: ThreadsOption = None,
    image_size: ImageSize = "513x513",
    output_stride: OutputStride = 16,
    in_channels: Annotated[int, typer.Option(min=1, help="Channels of the backbone feature (MobileNet-v2: 320, "
                                                         "Xception-71: 2048).")] = 320,
    batch: Annotated[int, typer.Option(min=1, help="Images per call.")] = 1,
    calibration: Annotated[int, typer.Option(min=0, help="Whole cells timed to correct the lookup.")] = 20,
    export_onnx: Annotated[Path | None, typer.Option("--export-onnx", help="Write the operations as ONNX files "
                                                     "and time_onnx.py into this folder, to time on another "
                                                     "device.")] = None,
    import_dir: Annotated[Path | None, typer.Option("--import", help="Make the profile from the timings "
                                                    "time_onnx.py wrote in this folder.")] = None,
) -> None:
    """A device profile: every operation of the DPC space timed once on this device (or another, through ONNX
    files), from which any cell's latency is predicted (search.latency.profile)."""
    from .models.profile import build_profile, export_operations, import_timings

    shape = {"image_size": parse_size(image_size), "output_stride": output_stride, "in_channels": in_channels,
             "batch": batch, "calibration": calibration}
    if export_onnx is not None:
        with shown_progress() as progress:
            folder = export_operations(export_onnx, progress=progress, **shape)
        console.print(f"wrote {folder}: on the device, python {folder / 'time_onnx.py'} {folder}; then densecell "
                      f"profile --import {folder} -o DEVICE.json")
        return
    if output is None:
        raise typer.BadParameter("--output FILE: where the profile goes")
    if import_dir is not None:
        made = import_timings(import_dir)
    else:
        with shown_progress() as progress:
            made = build_profile(runtime.value, provider, threads, progress=progress, **shape)
    made.write(output)
    console.print(f"wrote {output}: {len(made.operations)} operations on {made.runtime} {made.device}, "
                  f"{made.threads} threads, in {made.seconds:.0f} s; correction {made.slope:.3f} x lookup + "
                  f"{made.intercept:.3f} ms", highlight=False)


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
    checkpoint: Annotated[str | None, typer.Option(
        "--checkpoint", help=f"Export this trained model ({MODEL_SOURCES}; else the architecture below, untrained)."
    )] = None,
    backbone: Annotated[str, typer.Option(help="timm backbone.")] = "mobilenetv2_100",
    head: Annotated[str, typer.Option(help="Context head: dpc, aspp, or a plugin's (densecell list heads).",
                                             callback=head_name)] = "dpc",
    cell: CellSpec = "cityscapes-top1",
    num_classes: Annotated[int, typer.Option(help="Number of classes.")] = 19,
    image_size: ImageSize = "513x513",
    output_stride: OutputStride = 16,
    decoder: Annotated[bool, typer.Option(help="Include the DeepLabv3+ decoder.")] = True,
    check: Annotated[bool, typer.Option(help="Compare onnxruntime with PyTorch on a random image.")] = True,
) -> None:
    """Export a model to ONNX (fixed input size, normalisation in the metadata) and check it in onnxruntime."""
    from .models.export import export_model
    from .models.model import build_model
    from .training.checkpoint import load_run

    if checkpoint is not None:
        run = load_run(checkpoint)
        model, classes = run.model, run.classes
    else:
        model, classes = build_model(backbone=backbone, head=head, cell=load_cell(cell), num_classes=num_classes,
                                     output_stride=output_stride, decoder=decoder), ()
    exported = export_model(model, output, parse_size(image_size), classes, check)
    size = exported.image_size
    console.print(f"wrote {exported.path} ({exported.bytes / 2**20:.1f} MiB), input images [1, 3, {size[0]}, "
                  f"{size[1]}], mean {list(exported.mean)}, std {list(exported.std)}")
    if exported.error is not None:
        console.print(f"onnxruntime vs PyTorch: max |difference| = {exported.error:.2e}")


# --- data, training, evaluation ------------------------------------------------------------------------------------

@app.command()
def train(
    config: Annotated[Path | None, typer.Option("--config", help="Recipe: a YAML file or a built-in name "
                                                                 "(densecell list recipes), e.g. "
                                                                 "cityscapes-xception71-dpc.")] = None,
    data_root: DataRoot = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its last checkpoint.")] = False,
    init_from: Annotated[Path | None, typer.Option("--init-from", help="Start from this checkpoint's weights (a "
                                                                       "fine-tuning stage, with its own LR).")] = None,
    overrides: Overrides = None,
) -> None:
    """Train a model end to end (DeepLab recipe); under torchrun it runs DistributedDataParallel."""
    from .config import load_config
    from .training.train import train as run_training

    extra = [f"init_from={init_from}"] if init_from else []
    settings = load_config(config, with_data_root(overrides, data_root) + extra)
    with resumable("continue with --resume"), shown_progress() as progress:
        result = run_training(settings, resume=resume, progress=progress)
    if result.val_miou is not None:
        console.print(f"val mIoU {result.val_miou * 100:.2f}% after {result.iteration} iterations; "
                      f"run in {result.run_dir}")


def eval_settings(scales: str, window: str | None) -> tuple[tuple[float, ...], tuple[int, int] | None]:
    from .training.evaluate import PAPER_EVAL_SCALES

    scale_list = PAPER_EVAL_SCALES if scales == "paper" else parse_numbers(scales, float, "scales like 0.75,1,1.25")
    return scale_list, (parse_size(window) if window else None)


@app.command("eval")
def evaluate_command(
    checkpoint: CheckpointPath,
    data_root: DataRoot = None,
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "val",
    scales: Scales = "1",
    flip: Flip = False,
    window: Window = None,
    pad_to: PadTo = None,
    output_stride: Annotated[int | None, typer.Option("--output-stride", help="Evaluate at OS 8 or 16.")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write the per-class table as JSON here.")] = None,
) -> None:
    """mIoU and per-class IoU of a checkpoint on a split (single or multi-scale, flip, sliding window)."""
    from .training.evaluate import evaluate_checkpoint

    scale_list, window_size = eval_settings(scales, window)
    with shown_progress() as progress:
        result = evaluate_checkpoint(checkpoint, split, data_root, scale_list, flip, window_size,
                                     parse_size(pad_to) if pad_to else None, output_stride, output, progress)
    table = Table(title=f"{checkpoint}: {result.dataset}, {result.images} images, scales {list(scale_list)}"
                        f"{' + flip' if flip else ''}")
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    for name, iou in zip(result.classes, result.iou):
        table.add_row(name, "-" if iou != iou else f"{iou * 100:.2f}")
    table.add_section()
    table.add_row("mIoU", f"{result.miou * 100:.2f}")
    console.print(table)
    if output:
        console.print(f"wrote {output}")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    checkpoint: CheckpointPath,
    output: Annotated[Path, typer.Option("--output", help="Folder for the PNGs.")] = Path("predictions"),
    scales: Scales = "1",
    flip: Flip = False,
    window: Window = None,
    pad_to: PadTo = None,
) -> None:
    """Write trainId PNGs, colour overlays and (for Cityscapes models) labelId PNGs for the benchmark server."""
    from .training.evaluate import predict_checkpoint

    scale_list, window_size = eval_settings(scales, window)
    with shown_progress() as progress:
        written = predict_checkpoint(checkpoint, images, output, scale_list, flip, window_size,
                                     parse_size(pad_to) if pad_to else None, progress)
    console.print(f"wrote {len(written)} files for {len(images)} images to {output}")


@app.command()
def synthetic(
    root: Annotated[Path, typer.Argument(help="Where to write the dataset (Cityscapes layout).")],
    train_images: Annotated[int, typer.Option("--train", min=0, help="Training images.")] = 48,
    val_images: Annotated[int, typer.Option("--val", min=0, help="Validation images.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write the synthetic multi-scale dataset (same texture, classes told apart only by size and shape)."""
    from .data.synthetic import write_synthetic_cityscapes

    write_synthetic_cityscapes(root, train_images, val_images, seed=seed)
    console.print(f"wrote {train_images} train + {val_images} val images to {root} (Cityscapes layout)")


@app.command()
def save(
    run: Annotated[str, typer.Argument(help=f"The trained model: {MODEL_SOURCES}.")],
    output: Annotated[Path, typer.Argument(help="The folder to write.")],
) -> None:
    """Save a trained model as the Hugging Face ecosystem does: config.json, model.safetensors, the cell drawn and a
    model card (recipe, costs, val mIoU); densecell.from_pretrained(FOLDER) loads it."""
    from .training.sharing import save_run

    folder = save_run(run, output)
    console.print(f"saved {run} to {folder}: load it with densecell.from_pretrained({str(folder)!r})")


@app.command()
def push(
    run: Annotated[str, typer.Argument(help=f"The trained model: {MODEL_SOURCES}.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="The Hub repository, user/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
) -> None:
    """Push a trained model to the Hugging Face Hub with its model card (log in first: hf auth login)."""
    from .training.sharing import push_run

    url = push_run(run, repo_id, private or None)
    console.print(f"pushed {run} to {repo_id}: {url}")


# --- the search ----------------------------------------------------------------------------------------------------

@app.command()
def cache(config: SearchConfigPath = None, data_root: DataRoot = None, overrides: Overrides = None) -> None:
    """Cache the proxy backbone's features (warming the backbone up first if the recipe asks); resumable."""
    from .search.stages import feature_cache

    settings = search_config(config, data_root, overrides)
    with resumable(), shown_progress() as progress:
        path = feature_cache(settings, progress)
    console.print(f"feature cache complete in {path}")


@app.command()
def supernet(config: SearchConfigPath = None, data_root: DataRoot = None, overrides: Overrides = None) -> None:
    """The one-shot stage alone (search.mode oneshot): train the weight-sharing supernet on the cached features
    (resumable), score search.oneshot_cells cells with it in the study, and queue the best search.trials for the
    proxy."""
    from .search.stages import screen

    settings = search_config(config, data_root, overrides)
    with resumable(), shown_progress() as progress:
        queued = screen(settings, progress)
    console.print(f"one-shot screen done; the best {len(queued)} cells are queued for the proxy "
                  f"(one-shot mIoU {queued[0].oneshot_miou * 100:.1f}% to {queued[-1].oneshot_miou * 100:.1f}%)")


@search_app.callback(invoke_without_command=True)
def search(ctx: typer.Context, config: SearchConfigPath = None, data_root: DataRoot = None,
           overrides: Overrides = None) -> None:
    """Cache, search, re-rank and report in one command, resuming wherever it stopped; a second one on the same
    run joins it."""
    if ctx.invoked_subcommand is not None:
        return
    from .search.pipeline import run_pipeline

    settings = search_config(config, data_root, overrides)
    with resumable(), shown_progress() as progress:
        outputs = run_pipeline(settings, progress)
    if outputs:
        console.print(f"report: {outputs['report']} (and {outputs['html'].name}); best cell: {outputs['best_cell']}")
    else:  # a table's space: no report, its status
        from .search import load_study, study_status

        show_status(study_status(*load_study(settings.name, settings.storage_url)))


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
    _show_library_messages()
    with resumable():
        done = run_worker(study, storage, seed, device, owns_process=True)
    console.print(f"worker {os.getpid()} completed {done} trials")


@search_app.command("status")
def search_status(
    config: SearchConfigPath = None, storage: StorageOption = None, study: StudyOption = None,
    wide: Annotated[bool, typer.Option("--wide", help="Every column: seconds, host and the whole cell.")] = False,
) -> None:
    """Progress, failures and the best cells of a study."""
    from .search import study_status

    show_status(study_status(*open_study(config, storage, study)), wide)


def show_status(status: Any, wide: bool = False) -> None:
    """A study's status (:class:`densecell.search.StudyStatus`) as lines and a table."""
    console.print(f"study {status.name}: {status.trials} proxy trials wanted; "
                  + ", ".join(f"{state} {n}" for state, n in status.states.items()))
    if status.surplus:
        console.print(f"({status.surplus} pruned trials stepped aside because the budget was full)")
    if status.duplicates:
        console.print(f"({status.duplicates} pruned trials stepped aside because another worker took the same cell "
                      f"at the same moment)")
    if status.spent_steps:
        console.print(f"proxy steps spent: {status.spent_steps:,} ({status.pruned_steps:,} in pruned trials)")
    if status.oneshot_cells:
        console.print(f"one-shot screen: {status.oneshot_cells} cells scored by the supernet")
    for number, reason in status.failures:
        console.print(f"trial {number} failed: {reason}", markup=False)
    table = Table(title="best cells by proxy mIoU")
    columns = ["trial", "proxy %", "full %", "MAdds (M)", "cell"] + ["s", "host"] * wide
    for column in columns:
        table.add_column(column, no_wrap=True)
    for t in status.best:
        full = f"{status.full[t.number] * 100:.2f}" if t.number in status.full else ""
        what = f"table row {t.row}" if t.cell is None else t.cell.short() if wide else t.cell.digest()
        score = f"{t.values[0] * 100:.2f}" if t.cell else f"{t.values[0]:.4g}"  # a table's own units
        row = [str(t.number), score, full, "-" if t.madds is None else f"{t.madds / 1e6:.1f}", what]
        table.add_row(*row, *([f"{t.seconds:.1f}", str(t.host)] if wide else []))
    (Console(width=max(console.width, 200)) if wide else console).print(table)


@search_app.command("top")
def search_top(
    k: Annotated[int, typer.Option("--k", min=1, help="How many cells (at least 1).")] = 50,
    output: Annotated[Path, typer.Option("--output", help="Folder for the JSON files.")] = Path("top-cells"),
    config: SearchConfigPath = None, storage: StorageOption = None, study: StudyOption = None,
) -> None:
    """Write the k best cells (by proxy mIoU) as TF DeepLab JSON files, rank-01-trial-N.json, ..."""
    from .core.errors import InputError
    from .search.report import write_top_cells

    written = write_top_cells(open_study(config, storage, study)[0], k, output)
    if not written:
        raise InputError("the study has no completed trials yet: no cells to write")
    console.print(f"wrote {len(written)} cells to {output}")


@app.command("rerank")
def rerank_command(
    config: SearchConfigPath = None,
    data_root: DataRoot = None,
    top: Annotated[int | None, typer.Option("--top", min=0, help="How many of the best proxy cells (default: the "
                                                                  "recipe's).")] = None,
    overrides: Overrides = None,
) -> None:
    """Re-train the top K proxy cells end to end and record their val mIoU in the study (resumable)."""
    from .search.stages import rerank

    settings = search_config(config, data_root, overrides)
    with resumable(), shown_progress() as progress:
        scores = rerank(settings, top, progress)
    for number, miou in scores.items():
        console.print(f"trial {number}: end-to-end val mIoU {miou * 100:.2f}%")


@app.command()
def fidelity(
    config: SearchConfigPath = None,
    data_root: DataRoot = None,
    cells: Annotated[str, typer.Option("--cells", help="How many cells (drawn uniformly), or a JSON file or folder "
                                                       "of cells.")] = "31",
    against: Annotated[str, typer.Option("--against", help="end-to-end, oneshot, backbone=NAME or "
                                                           "proxy.FIELD=VALUE.")] = "end-to-end",
    seed: Annotated[int, typer.Option(help="Seed of the drawn cells.")] = 0,
    output: Annotated[Path | None, typer.Option("--output", help="Folder for scores and plot (default: RUN/fidelity/"
                                                                 "AGAINST).")] = None,
    overrides: Overrides = None,
) -> None:
    """How well the proxy ranks cells (paper Fig. 3): the same cells under the proxy and a second protocol,
    Spearman's rho, the top-5 overlap and a scatter plot. Resumable."""
    from .core.ranking import describe_rho
    from .search.fidelity import run_fidelity

    settings = search_config(config, data_root, overrides)
    with resumable(), shown_progress() as progress:
        result = run_fidelity(settings, cells, against, output, progress, seed)
    console.print(f"{len(result.cells)} cells: Spearman rho = {describe_rho(result.rho)} between the proxy and "
                  f"{against}, top-5 overlap {result.top5}/5 (paper, 31 cells: 0.47 cached vs end-to-end, 0.36 "
                  f"MobileNet-v2 vs Xception); plot {result.files['plot']}")


def study_report(config: Path | None, storage: str | None, study: str | None, output: Path | None,
                 command: str) -> tuple[Any, dict[str, Path]]:
    """The study's report through the report stage (its folder's lock, the 1x1 baseline), in --output, else the
    recipe's run folder, else here: the study and the report's files."""
    from .search.stages import search_report

    found, settings = open_study(config, storage, study)
    run_dir = search_config(config).run_dir if config else None
    with shown_progress():
        return found, search_report(found, settings, output or run_dir or Path("."), run_dir, command)


@app.command()
def correlate(
    config: SearchConfigPath = None, storage: StorageOption = None, study: StudyOption = None,
    output: Annotated[Path | None, typer.Option("--output", help="Folder for the report and plot.")] = None,
) -> None:
    """Spearman rho between proxy and end-to-end mIoU of the re-ranked cells (and between one-shot and proxy
    scores, after a one-shot screen), with scatter plots."""
    from .core.ranking import describe_rho
    from .search.report import correlations

    _, outputs = study_report(config, storage, study, output, "densecell correlate")
    for found in correlations(outputs["report"].parent):
        overlap = f", top-5 overlap {found.top5}/5" if found.top5 is not None else ""
        console.print(f"{found.what}: Spearman rho = {describe_rho(found.rho)} over {found.cells} cells{overlap}; "
                      f"plot {found.plot}")


@app.command()
def report(
    config: SearchConfigPath = None, storage: StorageOption = None, study: StudyOption = None,
    output: Annotated[Path | None, typer.Option("--output", help="Folder for the report.")] = None,
) -> None:
    """Markdown + HTML report: histogram, Pareto front, correlations, best cells drawn, branch importance."""
    outputs = study_report(config, storage, study, output, "densecell report")[1]
    console.print(f"report: {outputs['report']} and {outputs['html']}; best cell: {outputs['best_cell']}")


# --- errors --------------------------------------------------------------------------------------------------------

def advice(exc: BaseException) -> str:
    """What to do about a library error, in command-line terms."""
    from .core.errors import CacheDamaged, CacheMissing, DataRootMissing, RunExistsError, SearchError, TrainingError

    hints = [(RunExistsError, "pass --resume to continue it, or choose another name"),
             (DataRootMissing, "pass --data-root"),
             (CacheMissing, "run `densecell cache --config RECIPE` first"),
             (CacheDamaged, "delete {folder}, then run the same command again (or `densecell cache --config "
                            "RECIPE`) to build it anew"),
             (SearchError, "see `densecell search status --config RECIPE`"),
             (TrainingError, "lower the learning rate? resume with --resume from the last saved state")]
    hint = next((hint for kind, hint in hints if isinstance(exc, kind)), "")
    return hint.format(folder=getattr(exc, "folder", ""))


def main() -> None:
    """Entry point: usage and input errors become one line on stderr and exit code 2; other failures one line and
    exit code 1. ``DENSECELL_DEBUG=1`` re-raises, for the traceback."""
    from .core.errors import DensecellError, InputError, MissingExtra
    from .core.files import describe
    from .core.plugins import load_plugins

    try:
        load_plugins()  # here, so that a broken plugin is one line too
        code = app(standalone_mode=False)
    except typer.Abort:
        stderr.print("aborted")
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors, as vendored by typer
        stderr.print(f"error: {' '.join(exc.format_message().split())}")
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("DENSECELL_DEBUG"):
            raise
        text = describe(exc) if isinstance(exc, OSError) and not isinstance(exc, DensecellError) else str(exc)
        hint = advice(exc)
        stderr.print(f"error: {' '.join(text.split()) or type(exc).__name__}" + (f"; {hint}" if hint else ""))
        sys.exit(2 if isinstance(exc, (InputError, MissingExtra, ValueError, OSError)) else 1)
    sys.exit(code if isinstance(code, int) else 0)
