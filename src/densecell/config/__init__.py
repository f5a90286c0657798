"""The one typed settings system (pydantic): recipes read from YAML, overridable from the command line, the Python
API and the settings a study stores all use these classes, so each default and each check is written once.

A training recipe (:class:`~densecell.config.settings.TrainConfig`) has the sections ``data``, ``model`` and ``optim``;
a search recipe (:class:`~densecell.config.settings.SearchConfig`) ``data``, ``backbone``, ``warmup``, ``cache``,
``proxy``, ``search`` and ``rerank``. Every field has the paper's default. Overrides are ``section.field=value``
strings whose value is parsed as YAML (``optim.lr=0.02``, ``data.crop_size=[769,769]``). Every error is one line that
names the file and the field.

- :mod:`~densecell.config.settings`: the sections and their checks;
- :mod:`~densecell.config.recipes`: reading a recipe file (the package's own or the user's) and its overrides.
"""

from ..core.aliases import renamed_names
from .recipes import load_config, load_search_config, recipe_path, recipes
from .settings import (
    Amp,
    CacheConfig,
    DataConfig,
    LatencySettings,
    LearningRate,
    LookupSettings,
    ModelConfig,
    OptimConfig,
    OptimizerName,
    ProxySettings,
    RerankSection,
    SearchConfig,
    SearchOptions,
    SearchSection,
    Strict,
    StudySettings,
    SupernetConfig,
    TrainConfig,
)

__all__ = [
    "Amp", "CacheConfig", "DataConfig", "LatencySettings", "LearningRate", "LookupSettings", "ModelConfig",
    "OptimConfig", "OptimizerName", "ProxySettings", "RerankSection", "SearchConfig", "SearchOptions", "SearchSection",
    "StudySettings", "Strict", "SupernetConfig", "TrainConfig", "load_config", "load_search_config", "recipe_path",
    "recipes"
]

__getattr__ = renamed_names(__name__, {"SearchSettings": "StudySettings"}, globals())
