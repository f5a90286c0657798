"""The sections of the recipes and of a stored study, each field with the paper's default and its check."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..cell.space import PAPER_GRIDS, PAPER_NUM_BRANCHES, PAPER_RATES, Cell, SearchSpace
from ..core.errors import ConfigError, DataRootMissing
from ..core.registry import DATASETS, HEADS, PRUNERS, SAMPLERS, SEARCH_MODES, SPACES, Registry

__all__ = [
    "Amp", "CacheConfig", "DataConfig", "LatencySettings", "LearningRate", "LookupSettings", "ModelConfig",
    "OptimConfig", "OptimizerName", "ProxySettings", "RerankSection", "SearchConfig", "SearchOptions", "SearchSection",
    "StudySettings", "Strict", "SupernetConfig", "TrainConfig"
]

Amp = Literal["auto", "off", "bf16", "fp16"]
"""Mixed precision: auto is bf16 on GPUs that have it and fp32 on CPUs; fp16 uses a loss scale."""
OptimizerName = Literal["sgd", "adam"]
MemoryFormat = Literal["auto", "contiguous", "channels_last"]
Objectives = Literal["miou", "miou+madds", "miou+latency"]


def registered(registry: Registry) -> Any:
    """A setting whose value is a name in ``registry`` (:mod:`densecell.core.registry`): the registry is the one list of
    choices, for the recipes, the Python API and the command line."""
    return Annotated[str, AfterValidator(registry.check)]


# The names of registered kinds (each checked against its registry, plugins' entries included)
SamplerName = registered(SAMPLERS)
PrunerName = registered(PRUNERS)
SearchModeName = registered(SEARCH_MODES)
HeadName = registered(HEADS)
DatasetName = registered(DATASETS)


class Strict(BaseModel):
    """Unknown keys are errors, values are frozen, and a bad value given in Python raises a one-line
    :class:`~densecell.core.errors.ConfigError` (recipes get theirs from :func:`load_config`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _FieldError(type(self).__name__, *_first_error(exc)) from None


class DataConfig(Strict):
    dataset: DatasetName = Field("cityscapes", description="Which layout to read (densecell list datasets).")
    root: Path | None = Field(None, description="The dataset's root folder (or --data-root).")
    train_split: str = Field("train", description="Splits joined with '+', e.g. Cityscapes trainval+train_extra.")
    val_split: str | None = Field("val", description="The split scored during and after training; null: none.")
    options: dict[str, Any] = Field({}, description="The dataset's own options, checked by its class: cityscapes "
                                    "takes annotation (gtFine or gtCoarse), voc sbd_root (the SBD folder, for "
                                    "train_aug).")
    crop_size: tuple[int, int] = Field((513, 513), description="Training crops, height and width (the paper: 769 "
                                       "on Cityscapes, 513 on VOC and Person-Part).")
    min_scale: float = Field(0.5, gt=0, description="The smallest random rescaling of a training image.")
    max_scale: float = Field(2.0, gt=0, description="The largest random rescaling of a training image.")
    scale_step: float = Field(0.25, ge=0, description="The rescalings' step (DeepLab's 0.25); 0: continuous.")
    batch_size: int = Field(16, ge=1, description="Global batch, split over DDP processes.")
    workers: int = Field(2, ge=0, description="Data-loading processes (0: in the training process).")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if min(self.crop_size) < 1:
            raise ValueError(f"crop_size must be positive, got {list(self.crop_size)}")
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale {self.min_scale} is larger than max_scale {self.max_scale}")
        return self

    def require_root(self) -> Path:
        """The data root; a recipe without one cannot read data."""
        if self.root is None:
            raise DataRootMissing()
        return self.root

    @model_validator(mode="before")
    @classmethod
    def _options_of_0_3(cls, values: Any) -> Any:
        """Recipes of 0.3 set a dataset's options as fields of their own (``sbd_root``, ``annotation``)."""
        if isinstance(values, dict) and ({"sbd_root", "annotation"} & values.keys()):
            values = dict(values)
            moved = {key: values.pop(key) for key in ("sbd_root", "annotation") if key in values}
            values["options"] = {**moved, **(values.get("options") or {})}
        return values


class ModelConfig(Strict):
    """A DeepLab-style model, written once: a recipe's ``model`` section (a search recipe's ``backbone``), the keyword
    arguments of :func:`densecell.models.model.build_model`, and (without ``pretrained``, with the normalisation
    resolved) the ``model.config`` a checkpoint or a saved model carries. Defaults are the paper's: 256 filters, OS 16,
    dropout keep 0.9."""

    backbone: str = Field("mobilenetv2_100", description="A timm model name (features_only and output_stride), "
                          "e.g. xception71, mobilenetv2_100, resnet101.")
    head: HeadName = Field("dpc", description="The context head (densecell list heads).")
    cell: str = Field("cityscapes-top1", description="DPC only: a preset name, a JSON file, JSON text or a Cell.")
    num_classes: int = Field(19, ge=1, description="Set from the dataset when training.")
    classes: tuple[str, ...] | None = Field(None, description="The classes' names in train-id order (from the "
                                            "dataset when training): model cards and prediction files show them.")
    palette: tuple[tuple[int, int, int], ...] | None = Field(None, description="Their colours, for prediction "
                                                             "overlays.")
    output_stride: Literal[8, 16] = Field(16, description="The backbone's output stride; at 8 the separable "
                                          "convolutions' rates double (TF's conv_rate_multiplier).")
    decoder: bool = Field(True, description="The DeepLabv3+ decoder on the stride-4 features.")
    pooling: Literal["tf", "grid"] = Field("tf", description="Pyramid pooling as the released TF code does it (a "
                                           "stride-1 window) or as the paper's text reads (a g_h x g_w grid).")
    crop_size: tuple[int, int] | None = Field(None, description="Fix TF pyramid pooling's window to this crop; "
                                              "default: follow each input's size.")
    pretrained: bool | str | None = Field(None, description="true (timm's default weights), a timm tag such as "
                                          "xception71.tf_in1k, or a local .pth/.safetensors file.")
    mean: tuple[float, float, float] | None = Field(None, description="Input normalisation; default: the backbone's "
                                                    "timm pretrained_cfg.")
    std: tuple[float, float, float] | None = Field(None, description="Input normalisation; default: the backbone's "
                                                   "timm pretrained_cfg.")
    filters: int = Field(256, ge=1, description="Channels of every branch and of the projection (the paper: 256).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the cell's concatenation (the paper: keep 0.9).")
    bn_momentum: float = Field(0.1, gt=0, le=1, description="PyTorch's BatchNorm momentum; TF's decay 0.9997 is "
                               "0.0003.")
    feature_stages: int | None = Field(None, ge=1, description="Keep only the backbone's first stages.")

    @model_validator(mode="before")
    @classmethod
    def _classes_count(cls, values: Any) -> Any:
        """Class names given without a count set it; with one, they must agree."""
        if isinstance(values, dict) and values.get("classes") is not None:
            count = values.setdefault("num_classes", len(values["classes"]))
            if count != len(values["classes"]):
                raise ValueError(f"num_classes {count} but {len(values['classes'])} class names")
        return values

    @field_validator("cell", mode="before")
    @classmethod
    def _cell_as_json(cls, value: Any) -> Any:
        """A cell written inline in YAML (a list of branches) or given as a Cell is kept as its TF JSON text."""
        if isinstance(value, Cell):
            return value.to_json()
        return json.dumps(value) if isinstance(value, list) else str(value) if isinstance(value, Path) else value

    @field_validator("pretrained", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        """A path is kept as text; ``"true"``/``"false"`` (from a command line, or quoted in YAML) are the booleans,
        never a timm tag named "True"."""
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "none", "null", ""):
            return {"true": True, "yes": True, "false": False, "no": False}.get(value.strip().lower())
        return value



class LearningRate(Strict):
    """DeepLab's optimisation, shared by full training and the proxy: SGD with momentum (TF's), poly LR from ``lr``
    with ``power``, weight decay as TF's regulariser."""

    lr: float = Field(0.01, gt=0, description="The starting learning rate of the poly schedule.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD's momentum.")
    weight_decay: float = Field(4e-5, ge=0, description="TF DeepLab's regulariser: on convolution kernels, not on "
                                "depthwise kernels, BatchNorm or biases.")
    power: float = Field(0.9, ge=0, description="The poly schedule's power: lr * (1 - step / iterations) ** power.")


class OptimConfig(LearningRate):
    """A training recipe's ``optim`` section: DeepLab's optimisation for ``iterations`` (90K: Cityscapes')."""

    iterations: int = Field(90_000, ge=1, description="Training iterations (Cityscapes': 90K).")
    freeze_bn: bool = Field(False, description="Keep BatchNorm's statistics and affine weights fixed (fine-tuning "
                            "stages).")


class TrainConfig(Strict):
    """A training recipe: the data, the model and its optimisation; what ``densecell train`` runs."""

    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$", description="The run's name: its folder under output_dir.")
    seed: int = Field(0, description="Every random choice of the run (batches, augmentation, initialisation).")
    output_dir: Path = Field(Path("runs"), description="Where run folders go.")
    data: DataConfig = Field(DataConfig(), description="The dataset, its splits and augmentation.")
    model: ModelConfig = Field(ModelConfig(), description="The model (the keyword arguments of build_model).")
    optim: OptimConfig = Field(OptimConfig(), description="The optimisation: poly LR, SGD, weight decay.")
    init_from: Path | None = Field(None, description="Start from this checkpoint's weights (a fine-tuning stage).")
    checkpoint_every: int = Field(1000, ge=1, description="Write checkpoint.pt every N iterations (atomically).")
    log_every: int = Field(20, ge=1, description="Write metrics.csv (and TensorBoard) every N iterations.")
    eval_every: int = Field(0, ge=0, description="0: evaluate once, at the end.")
    amp: Amp = Field("auto", description="Mixed precision: auto is bf16 on GPUs that have it, fp32 on CPUs; fp16 "
                     "scales the loss.")
    deterministic: bool = Field(False, description="Deterministic kernels: exact resume on a GPU, a little slower.")
    allow_random_backbone: bool = Field(False, description="Train from a random backbone without the warning that "
                                        "model.pretrained is not set (the synthetic demo does).")

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name


# --- the proxy task and the search --------------------------------------------------------------------------------

class ProxySettings(LearningRate):
    """Head-only training on cached features. Defaults are the paper's proxy: 30K iterations, batch 8, poly LR from
    0.01, 256 filters, the loss on logits upsampled to the crop (TF's ``upsample_logits``).

    ``upsample_logits: false`` computes the loss on labels subsampled to the logits instead (cheaper; see the README
    for how it ranks cells). ``optimizer: adam`` is for short budgets (the CPU demo's hundred steps), in which SGD
    leaves the deeper cells under-trained and so favours shallow ones."""

    iterations: int = Field(30_000, ge=1, description="Training steps of a candidate (the paper: 30K).")
    batch_size: int = Field(8, ge=1, description="Cached crops per step (the paper: 8).")
    filters: int = Field(256, ge=1, description="Channels of the candidate's branches (the paper: 256).")
    optimizer: OptimizerName = Field("sgd", description="sgd (the paper's) or adam (short CPU budgets).")
    upsample_logits: bool = Field(True, description="The loss on logits upsampled to the crop (the paper's, TF's "
                                  "upsample_logits); false: on labels subsampled to the logits.")
    eval_every: int = Field(0, ge=0, description="Score on the val features every N steps (for pruning).")
    amp: Amp = Field("auto", description="auto: bf16 or fp16, whichever is faster on the GPU (measured once per "
                     "study); fp32 on CPUs.")
    memory_format: MemoryFormat = Field("auto", description="auto: NCHW or channels-last, whichever is faster "
                                        "(measured once per study).")
    engine: Literal["auto", "eager", "graph"] = Field("auto", description="auto: a CUDA graph on a GPU, eager on a "
                                                     "CPU (densecell.training.steps).")


class CacheConfig(Strict):
    """How the proxy's feature cache is built."""

    views: int = Field(1, ge=1, description="Augmented crops cached per training image.")
    shard_size: int = Field(64, ge=1, description="Crops per cache shard (the unit a crashed cache resumes at).")
    val_size: tuple[int, int] | None = Field(None, description="Pad val images to this size; default: the largest "
                                             "val image's height and width.")
    dir: Path | None = Field(None, description="Use this (complete) cache instead of building one in the run.")


class SupernetConfig(Strict):
    """The one-shot supernet (densecell.search.supernet): how long it trains and how a cell is scored with it."""

    steps: int = Field(2000, ge=1, description="Training steps, one sampled cell each.")
    sampling: Literal["uniform", "family-first"] = Field(
        "uniform", description="uniform: each branch's operation uniform over the 81 (SPOS); family-first: its "
        "family uniform over the three, then its rate or grid (FairNAS's fairness over families: a 1x1 conv is "
        "trained on a third of the steps, not 1/81).")
    checkpoint_every: int = Field(100, ge=1, description="Write the supernet's checkpoint every N steps.")
    bn_batches: int = Field(4, ge=1, description="Cached training batches (a seeded random sample of the cache) "
                            "that re-estimate a cell's BatchNorm.")
    bn_batch_size: int = Field(16, ge=1, description="Crops per batch of the BatchNorm re-estimation.")


def _space_name(value: str) -> str:
    """``dpc`` or ``NAME=SOURCE`` (``table=FILE``), its NAME a registered space."""
    name, sep, source = value.partition("=")
    SPACES.check(name)
    if name == "dpc" and sep:
        raise ValueError("the dpc space takes no source: its shape is num_branches, rates and grids")
    if name != "dpc" and not source.strip():
        raise ValueError(f"space {value!r}: expected {name}=SOURCE (table=FILE for a ground-truth table)")
    return value


class LookupSettings(Strict):
    """A search on a ground-truth table's space: training a cell is looking its score up, with a proxy's scatter
    and a training time (:class:`densecell.search.tables.Lookup`), so that the real workers, storage, heartbeats and
    retries can be measured against the benchmark harness."""

    noise: float | Literal["auto"] = Field(0.0, description="The scatter (standard deviation) added to each looked-up "
                                           "score; auto: the table's measured level (its repeated trainings, else "
                                           "the DPC table's noise floor, Spearman 0.80).")
    seconds: float = Field(0.05, ge=0, description="The median time a cell 'trains' (lognormal).")
    spread: float = Field(0.3, ge=0, description="The log-spread of the training times.")

    @field_validator("noise")
    @classmethod
    def _finite(cls, value: float | str) -> float | str:
        if value != "auto" and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"noise {value}: a standard deviation >= 0, or auto")
        return value


class LatencySettings(Strict):
    """The latency of a cell on the device that deploys it, predicted from a device profile (``densecell profile``):
    a budget that keeps slower cells from being proposed at all, and the second objective of ``miou+latency``."""

    profile: str | None = Field(None, description="A device profile file (densecell profile -o FILE): the device "
                                "and runtime whose latency counts.")
    budget_ms: float | None = Field(None, gt=0, description="Propose and train only cells whose predicted latency "
                                    "is at most this many milliseconds (needs profile).")

    @model_validator(mode="after")
    def _budget_needs_profile(self) -> LatencySettings:
        if self.budget_ms is not None and self.profile is None:
            raise ValueError("latency.budget_ms needs latency.profile: the device profile that predicts latency")
        return self


class SearchOptions(Strict):
    """The search's own options (the space, the sampler, the budget, the pruner, the mode): the part of a search
    recipe (:class:`SearchConfig`) that both its ``search`` section (:class:`SearchSection`, which adds how this
    command runs it) and the study (:class:`StudySettings`, which adds the proxy and the cache) hold."""

    space: Annotated[str, AfterValidator(_space_name)] = Field(
        "dpc", description="What the sampler searches (densecell list spaces): dpc, the Dense Prediction Cell space "
        "shaped by num_branches, rates and grids; or NAME=SOURCE, e.g. table=FILE: a ground-truth table's rows, "
        "each 'trained' by looking its score up (lookup), no data or cache needed.")
    lookup: LookupSettings = Field(LookupSettings(), description="How a table's cell is 'trained' (space: "
                                   "table=FILE only).")

    latency: LatencySettings = Field(LatencySettings(), description="A device's latency: a budget on the cells "
                                     "proposed, and the second objective of miou+latency (space: dpc only).")

    mode: SearchModeName = Field("proxy", description="oneshot: screen oneshot_cells cells with the supernet first, "
                                 "then train the best `trials` on the proxy.")
    oneshot_cells: int = Field(1000, ge=1, description="Cells the one-shot screen scores.")
    trials: int = Field(100, ge=1, description="Completed proxy trials the study must reach.")
    sampler: SamplerName = Field("random", description="Which strategy proposes the cells (densecell list samplers; "
                             "the paper's was random search, the recipes use the measured best).")
    objectives: Objectives = Field("miou", description="What the study optimises: the proxy mIoU, or it and the "
                                   "multiply-adds or the measured latency (two objectives: a Pareto front).")
    pruner: PrunerName = Field("none", description="Stop unpromising trials at the rungs of proxy.eval_every "
                           "(densecell list pruners).")
    threads: int = Field(1, ge=1, description="torch threads per worker.")
    num_branches: int = Field(PAPER_NUM_BRANCHES, ge=1, description="Branches B of a cell (the paper: 5).")
    rates: tuple[int, ...] = Field(PAPER_RATES, description="Atrous rates per axis of the separable convolutions, "
                                   "at output stride 16 (the paper: 1, 3, 6, ..., 21).")
    grids: tuple[int, ...] = Field(PAPER_GRIDS, description="Pyramid-pooling grid sizes per axis (the paper: 1, 2, "
                                   "4, 8).")
    heartbeat_s: int = Field(5, ge=1, description="Seconds between a running trial's heartbeats.")
    grace_s: int = Field(20, ge=1, description="Seconds without a heartbeat after which a trial's worker is taken "
                         "for dead and its cell queued again.")
    max_retry: int = Field(3, ge=0, description="How many times a dead worker's cell is queued again.")
    max_failures: int = Field(20, ge=1, description="Trials failed with a reason (a non-finite loss) after which "
                              "the workers stop.")

    @model_validator(mode="after")
    def _check(self) -> SearchOptions:
        if self.sampler == "nsga2" and self.objectives == "miou":
            raise ValueError("the nsga2 sampler needs two objectives: miou+madds or miou+latency")
        if self.pruner != "none" and self.objectives != "miou":
            raise ValueError("pruning needs a single objective (miou)")
        if not self.on_cells and (self.mode, self.pruner, self.objectives) != ("proxy", "none", "miou"):
            raise ValueError(f"space {self.space!r}: a table's points are looked up, so mode proxy, pruner none and "
                             f"objectives miou only")
        if self.latency.profile is not None and not self.on_cells:
            raise ValueError(f"space {self.space!r}: latency.profile is for the dpc space's cells")
        SearchSpace(self.num_branches, self.rates, self.grids)
        return self

    @property
    def cell_space(self) -> SearchSpace:
        """The DPC space's shape (``space: dpc``)."""
        return SearchSpace(self.num_branches, self.rates, self.grids)

    @property
    def on_cells(self) -> bool:
        """Whether the search trains DPC cells (on the proxy), rather than looking up another space's points."""
        return self.space == "dpc"

    @property
    def directions(self) -> list[str]:
        return ["maximize"] if self.objectives == "miou" else ["maximize", "minimize"]


class SearchSection(SearchOptions):
    """A search recipe's ``search`` section: the search's options, and how this command runs it (its workers, the
    study's storage), which the study does not store."""

    workers: int = Field(1, ge=1, description="Worker processes this command starts on this machine.")
    storage: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<run dir>/study.db.")

    def options(self) -> SearchOptions:
        return SearchOptions(**{name: getattr(self, name) for name in SearchOptions.model_fields})


class StudySettings(SearchOptions):
    """What a study stores (``SearchSettings`` before densecell 0.5): the search's options, the proxy's settings and
    the cache: everything a worker needs, so that ``densecell search worker`` needs only the study's name and
    storage."""

    cache_dir: str
    seed: int = 0
    proxy: ProxySettings = ProxySettings()

    @model_validator(mode="after")
    def _pruner_needs_rungs(self) -> StudySettings:
        if self.pruner != "none" and not self.proxy.eval_every:
            raise ValueError("search.pruner needs proxy.eval_every > 0: the steps at which trials are scored and "
                             "may be pruned")
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> StudySettings:
        """Read settings stored by this or an earlier version (which kept ``prune`` and ``channels_last``)."""
        values = json.loads(text)
        if "prune" in values:
            values["pruner"] = "median" if values.pop("prune") else "none"
        proxy = values.get("proxy", {})
        if "channels_last" in proxy:
            proxy["memory_format"] = "channels_last" if proxy.pop("channels_last") else "contiguous"
        return cls(**values)


class RerankSection(Strict):
    top: int = Field(50, ge=0, description="Re-train this many of the best proxy cells end to end (paper: 50).")
    data: DataConfig | None = Field(None, description="The fields set here replace the search's data fields for "
                                    "re-ranking (the paper's real task: batch 16).")
    optim: OptimConfig = Field(OptimConfig(), description="The re-training's optimisation (the real task's).")


class SearchConfig(Strict):
    """A search recipe: the data, the proxy's backbone (warmed up or pretrained), the cache, the proxy, the search,
    the supernet and the re-ranking; what ``densecell search`` runs end to end."""

    name: str = Field("search", pattern=r"^[A-Za-z0-9_.-]+$", description="The search's name: its study and its "
                      "folder under output_dir.")
    seed: int = Field(0, description="The cache's crops, the samplers' seeds, the candidates' initialisation.")
    output_dir: Path = Field(Path("runs"), description="Where run folders go.")
    data: DataConfig = Field(DataConfig(batch_size=8), description="The dataset the cache is built from.")
    backbone: ModelConfig = Field(ModelConfig(head="aspp"), description="The proxy's backbone (and the model its "
                                  "warm-up trains, with an ASPP head).")
    warmup: OptimConfig | None = Field(None, description="Train the backbone (with an ASPP head) on the data first; "
                                       "None: use backbone.pretrained as it is.")
    allow_random_backbone: bool = Field(False, description="Cache features of a backbone with neither pretrained "
                                        "weights nor a warm-up (useful only for tests), and warm a backbone up from "
                                        "random weights without a warning (the synthetic demo).")
    cache: CacheConfig = Field(CacheConfig(), description="How the feature cache is built.")
    proxy: ProxySettings = Field(ProxySettings(), description="How a candidate trains on the cached features.")
    search: SearchSection = Field(SearchSection(), description="The search: space, sampler, budget, pruner, workers.")
    supernet: SupernetConfig = Field(SupernetConfig(), description="The one-shot supernet (search.mode: oneshot).")
    rerank: RerankSection = Field(RerankSection(), description="The end-to-end re-training of the best cells.")

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        try:
            self.search_settings()
        except ValidationError as exc:  # one line, not pydantic's nested report
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return self

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    @property
    def storage_url(self) -> str:
        return self.search.storage or f"sqlite:///{(self.run_dir / 'study.db').resolve()}"

    @property
    def cache_dir(self) -> Path:
        return self.cache.dir or self.run_dir / "cache"

    def rerank_data(self) -> DataConfig:
        """The search's data section with the re-ranking's changes."""
        changes = self.rerank.data
        if changes is None:
            return self.data
        return DataConfig(**(self.data.model_dump() | changes.model_dump(include=changes.model_fields_set)))

    def search_settings(self) -> StudySettings:
        """What the study stores: the search section without this command's own choices, the proxy, the cache."""
        options = self.search.options().model_dump()
        name, _, source = options["space"].partition("=")
        if name == "table":  # a worker on another machine reads the same file: the path is stored whole
            options["space"] = f"table={Path(source).expanduser().resolve()}"
        if options["latency"]["profile"] is not None:  # so is a device profile's
            options["latency"]["profile"] = str(Path(options["latency"]["profile"]).expanduser().resolve())
        return StudySettings(cache_dir=str(self.cache_dir.resolve()), seed=self.seed, proxy=self.proxy, **options)


class _FieldError(ConfigError):
    """A settings object built in Python got a bad value; pydantic passes it up through the objects that hold it,
    and :func:`validation_line` joins the path back together."""

    def __init__(self, owner: str, where: list[str], reason: str, more: int) -> None:
        super().__init__(f"{owner}: {'.'.join(where) or '(top level)'}: {reason}"
                         + (f" (and {more} more)" if more else ""))
        self.where, self.reason, self.more = where, reason, more


def _first_error(error: ValidationError) -> tuple[list[str], str, int]:
    first = error.errors()[0]
    where = [str(p) for p in first["loc"]]
    reason = first["msg"].removeprefix("Value error, ")
    nested = first.get("ctx", {}).get("error")
    if isinstance(nested, _FieldError):
        where, reason = where + nested.where, nested.reason
    elif first["type"] == "extra_forbidden":
        reason = "unknown key"
    return where, reason, error.error_count() - 1


def validation_line(error: ValidationError, origin: str) -> str:
    where, reason, more = _first_error(error)
    return f"{origin}: {'.'.join(where) or '(top level)'}: {reason}" + (f" (and {more} more)" if more else "")
