"""The pages of the documentation that are generated at every build, never written twice: the command line (from
the typer app), the recipe fields (from the pydantic settings) and the measured figures (from
``benchmarks/results/*.json``, through ``benchmarks/report.py``, which also writes BENCHMARKS.md)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from densecell.core.files import write_text

ROOT = Path(__file__).resolve().parent.parent


def write_all(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pages = (("cli.md", cli_page()), ("recipes.md", recipes_page()), ("results.md", results_page()),
             ("which-search-figures.md", which_search_figures()))
    for name, text in pages:
        path = folder / name
        if not path.exists() or path.read_text() != text:  # unchanged pages keep their time: no needless rebuild
            write_text(path, text)  # whole or not at all: two builds at once never read a half-written page


# --- the command line -------------------------------------------------------------------------------------------------

def cli_page() -> str:
    from densecell.cli import app

    root = typer.main.get_command(app)
    lines = ["# Command line", "", "Generated from the typer app (`densecell.cli`) at every build of these pages: "
             "every command, its arguments and its options, as `densecell COMMAND --help` prints them.", ""]
    for path, command in _commands(root, ["densecell"]):
        lines += _command(path, command)
    return "\n".join(lines) + "\n"


def _commands(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    """Every command under ``command`` (typer's own click: a group is what lists commands)."""
    found = [] if len(path) == 1 else [(path, command)]
    if hasattr(command, "list_commands"):
        context = command.context_class(command)
        for name in command.list_commands(context):
            found += _commands(command.get_command(context, name), path + [name])
    return found


def _escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _command(path: list[str], command: Any) -> list[str]:
    usage = " ".join(path + [p.name.upper() for p in command.params if p.param_type_name == "argument"])
    lines = [f"## `{' '.join(path)}`", "", _escape(command.help or ""), "", "```console", f"$ {usage} [OPTIONS]",
             "```", ""]
    rows = []
    for param in command.params:
        if param.name == "help":
            continue
        option = param.param_type_name == "option"
        names = ", ".join(f"`{o}`" for o in (param.opts if option else [param.name.upper()]))
        default = param.default if not callable(param.default) else None
        shown = f"`{default}`" if option and default not in (None, (), [], False) else ""
        rows.append(f"| {names} | {_escape(getattr(param, 'help', None) or '')} | {shown} |")
    if rows:
        lines += ["| argument or option | what | default |", "|---|---|---|", *rows, ""]
    return lines


# --- the recipe fields ------------------------------------------------------------------------------------------------

def recipes_page() -> str:
    from densecell.config import SearchConfig, TrainConfig, recipes

    lines = ["# Recipe fields", "",
             "Generated from the settings' pydantic models (`densecell.config`) at every build of these pages: every "
             "section and field of a recipe, with its type, default, allowed values and description. A field is set "
             "in the YAML file or on the command line with `--set section.field=value` (the value read as YAML).", "",
             "Built-in recipes (`--config NAME`, `densecell list recipes`): "
             + ", ".join(f"`{name}`" for name in recipes()) + ".", ""]
    for title, model in (("Training recipe (`densecell train`)", TrainConfig),
                         ("Search recipe (`densecell search`, `cache`, `rerank`, `fidelity` ...)", SearchConfig)):
        lines += [f"## {title}", ""]
        lines += _model_fields(model, "")
    return "\n".join(lines) + "\n"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (``DataConfig``, or ``DataConfig | None``), if any."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type(typing.get_args(annotation)[0]) + " (a registered name)"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        args = typing.get_args(annotation)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[str, ...]: any number of them
            return f"list of {_type(args[0])}"
        return f"{origin.__name__}[{', '.join(_type(arg) for arg in args)}]"
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _allowed(field: FieldInfo) -> str:
    """What a registered-name field accepts: its registry's names."""
    from densecell.core.registry import REGISTRIES

    for validator in getattr(field, "metadata", []):
        registry = getattr(getattr(validator, "func", None), "__self__", None)
        if registry in REGISTRIES.values():
            return ", ".join(f"`{name}`" for name in registry)
    return ""


def _default(field: FieldInfo) -> str:
    """The default as it is written in a recipe (YAML)."""
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    plain = _plain(value)
    return f"`{yaml.safe_dump(plain, default_flow_style=True).strip().removesuffix('...').strip()}`"


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return str(value) if isinstance(value, Path) else value


def _model_fields(model: type[BaseModel], prefix: str) -> list[str]:
    rows, nested = [], []
    for name, field in model.model_fields.items():
        inner = _model_of(field.annotation)
        key = f"{prefix}{name}"
        if inner is not None:
            nested.append((key, inner, field))
            continue
        allowed = _allowed(field)
        kind = _type(field.annotation) + (f": {allowed}" if allowed else "")
        rows.append(f"| `{key}` | {kind} | {_default(field)} | {_escape(field.description or '')} |")
    lines = []
    if rows:
        lines += ["| field | type | default | description |", "|---|---|---|---|", *rows, ""]
    for key, inner, field in nested:
        lines += [f"### `{key}`", "", _escape(field.description or (inner.__doc__ or "").split("\n\n")[0]), ""]
        lines += _model_fields(inner, f"{key}.")
    return lines


# --- the measured figures ---------------------------------------------------------------------------------------------

def results_page() -> str:
    import report

    intro = ["# Measured figures", "",
             "Generated from `benchmarks/results/*.json` at every build of these pages (the same sections as "
             "BENCHMARKS.md, which `python benchmarks/report.py` writes): each figure with the machine and the "
             "command that measured it.", ""]
    return "\n".join(intro + report.sections(image_prefix="../../benchmarks/results/")) + "\n"


def which_search_figures() -> str:
    """The measured part of "Which search to use": every sampler on every table, the goals, where the tables
    disagree, what a proposal costs."""
    import report

    efficiency = [report.load(path.stem) for path in sorted(report.RESULTS.glob("search_efficiency_*.json"))]
    if not efficiency:
        return "No measurement yet: `make table` writes it.\n"
    report.IMAGES = "../../benchmarks/results/"
    lines = report.efficiency_section(efficiency, report.load("search_overhead"))
    return "\n".join(line.replace("## ", "### ", 1) if line.startswith("## ") else line for line in lines[2:]) + "\n"
