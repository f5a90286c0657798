"""Typed run configurations (pydantic), read from YAML recipes and overridable from the command line.

A recipe is a YAML file with the sections ``data``, ``model`` and ``optim``; every field has the paper's default.
Overrides are ``section.field=value`` strings whose value is parsed as YAML (``optim.lr=0.02``,
``data.crop_size=[769,769]``). Every error is one line that names the file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A recipe or override that does not validate; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Strict):
    dataset: Literal["cityscapes", "voc", "person_part", "folder"] = "cityscapes"
    root: Path | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    sbd_root: Path | None = Field(None, description="PASCAL VOC only: the SBD folder, for the train_aug split.")
    annotation: Literal["gtFine", "gtCoarse"] = Field("gtFine", description="Cityscapes only.")
    crop_size: tuple[int, int] = (513, 513)
    min_scale: float = Field(0.5, gt=0)
    max_scale: float = Field(2.0, gt=0)
    scale_step: float = Field(0.25, ge=0)
    batch_size: int = Field(16, ge=1, description="Global batch, split over DDP processes.")
    workers: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if min(self.crop_size) < 1:
            raise ValueError(f"crop_size must be positive, got {list(self.crop_size)}")
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale {self.min_scale} is larger than max_scale {self.max_scale}")
        return self

    def dataset_options(self) -> dict[str, Any]:
        """The keyword arguments of the dataset class that this config's dataset takes."""
        if self.dataset == "voc" and self.sbd_root is not None:
            return {"sbd_root": self.sbd_root}
        if self.dataset == "cityscapes":
            return {"annotation": self.annotation}
        return {}


class ModelConfig(Strict):
    backbone: str = "mobilenetv2_100"
    head: Literal["dpc", "aspp"] = "dpc"
    cell: str = "cityscapes-top1"
    output_stride: Literal[8, 16] = 16
    decoder: bool = True
    pooling: Literal["tf", "grid"] = "tf"
    pretrained: Path | None = None
    filters: int = Field(256, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    bn_momentum: float = Field(0.1, gt=0, le=1)
    feature_stages: int | None = Field(None, ge=1, description="Keep only the backbone's first stages.")

    @field_validator("cell", mode="before")
    @classmethod
    def _cell_as_json(cls, value: Any) -> Any:
        """A cell written inline in YAML (a list of branches) is kept as its TF JSON text."""
        return json.dumps(value) if isinstance(value, list) else value

    def build_kwargs(self) -> dict[str, Any]:
        return self.model_dump()


class OptimConfig(Strict):
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(4e-5, ge=0)
    power: float = Field(0.9, ge=0)
    iterations: int = Field(90_000, ge=1)
    freeze_bn: bool = False


class TrainConfig(Strict):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    output_dir: Path = Path("runs")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(20, ge=1)
    eval_every: int = Field(0, ge=0, description="0: evaluate once, at the end.")
    amp: Literal["auto", "off", "bf16"] = Field("auto", description="auto: bf16 on CUDA, fp32 on the CPU.")

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Set ``a.b.c=value`` in a nested dict, the value parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {assignment!r}: expected key=value, e.g. optim.lr=0.02")
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {part} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {assignment!r}: the value is not valid YAML") from None


def one_line(error: ValidationError, origin: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{origin}: {where}: {message}{more}"


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML recipe (or start from the defaults) and apply ``section.field=value`` overrides."""
    return _load(TrainConfig, path, overrides)  # type: ignore[return-value]


def _load(kind: type[BaseModel], path: str | Path | None, overrides: list[str] | tuple[str, ...]) -> BaseModel:
    tree: dict[str, Any] = {}
    origin = "config"
    if path is not None:
        origin = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data, model, optim, ...)")
        tree = loaded or {}
    for assignment in overrides:
        apply_override(tree, assignment)
    try:
        return kind.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, origin)) from None


class ProxyConfig(Strict):
    """The proxy task: the feature cache and head-only training (paper: 30K iterations, batch 8, LR 0.01)."""

    views: int = Field(1, ge=1, description="Augmented crops cached per training image.")
    shard_size: int = Field(64, ge=1, description="Crops per cache shard (the unit a crashed cache resumes at).")
    val_size: tuple[int, int] | None = Field(None, description="Pad val images to this size; default: the first's.")
    iterations: int = Field(30_000, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(0.01, gt=0)
    filters: int = Field(256, ge=1)
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="sgd: the paper's; adam: for short budgets.")
    upsample_logits: bool = Field(True, description="Loss on upsampled logits (paper); False: on subsampled labels.")
    eval_every: int = Field(0, ge=0)
    prune: bool = Field(False, description="Stop hopeless candidates early (Optuna's median rule).")


class SearchSection(Strict):
    sampler: Literal["random", "local", "tpe", "nsga2"] = "random"
    objectives: Literal["miou", "miou+madds", "miou+latency"] = "miou"
    trials: int = Field(100, ge=1)
    workers: int = Field(1, ge=1, description="Worker processes this command starts on this machine.")
    threads: int = Field(1, ge=1, description="torch threads per worker.")
    storage: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<run dir>/study.db.")
    num_branches: int = Field(5, ge=1)
    rates: tuple[int, ...] = (1, 3, 6, 9, 12, 15, 18, 21)
    grids: tuple[int, ...] = (1, 2, 4, 8)


class RerankSection(Strict):
    top: int = Field(50, ge=0, description="Re-train this many of the best proxy cells end to end (paper: 50).")
    optim: OptimConfig = OptimConfig()


class SearchConfig(Strict):
    """The one command: warm up (or load) a backbone, cache its features, search, re-rank, report."""

    name: str = Field("search", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    output_dir: Path = Path("runs")
    data: DataConfig = DataConfig(batch_size=8)
    backbone: ModelConfig = ModelConfig(head="aspp")
    warmup: OptimConfig | None = Field(None, description="Train the backbone (with an ASPP head) on the data first; "
                                       "None: use model.pretrained as it is.")
    proxy: ProxyConfig = ProxyConfig()
    search: SearchSection = SearchSection()
    rerank: RerankSection = RerankSection()

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    @property
    def storage_url(self) -> str:
        return self.search.storage or f"sqlite:///{(self.run_dir / 'study.db').resolve()}"


def load_search_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> SearchConfig:
    """Like :func:`load_config`, for a search recipe."""
    return _load(SearchConfig, path, overrides)  # type: ignore[return-value]
