"""Sphinx configuration of densecell's documentation: guides in Markdown (MyST), the API from the docstrings
(autodoc, their :class:/:func: cross-references resolved and checked), and three pages generated from the code and
the benchmark results at every build (the command line, the recipe fields, the measured figures):
``docs/_generated/``, never edited by hand. ``make docs`` builds with warnings as errors (``-W -n``)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks"), str(Path(__file__).resolve().parent)]

import generate  # noqa: E402  (docs/generate.py: the generated pages)

generate.write_all(Path(__file__).resolve().parent / "_generated")

project = "densecell"
author = "the densecell developers"
copyright = "2026, the densecell developers"
release = __import__("densecell").__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_generated/which-search-figures.md"]  # included by guides/which-search.md
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

smartquotes = False  # --data-root stays two hyphens, quotes stay as written
html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["densecell.css"]  # a wider content column and scrolling tables (see the file)
html_title = f"densecell {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
add_module_names = False

# Every cross-reference into densecell must resolve (-n); references to other libraries (torch, optuna, numpy,
# the standard library) are not checked: without a network there is no intersphinx inventory to check them against.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"^(?!densecell\b)(?![A-Z]\w*$).*"),  # outside densecell
                        (r"py:.*", r"^(Any|Path|Callable|Iterator|Sequence|Mapping|Collection|Literal|Annotated)$"),
                        (r"py:.*", r"^(BaseModel|BaseSampler|BasePruner|FrozenTrial|Study|Trial|Dataset|Module|"
                                   r"Tensor|ndarray|ModelCard|ModelCardData|PyTorchModelHubMixin|TrialState|"
                                   r"CategoricalDistribution|BaseDistribution|Sampler|RDBStorage|MutableMapping|"
                                   r"BaseStorage|EntryPoint|ModuleType|ModuleSpec|MetaPathFinder|Loader|"
                                   r"ValidationError|Figure|Axes|Generator|Random|TrialRecord\.\w+|"
                                   r"FieldInfo|Field|Ge|Le|MinLen|AfterValidator)$"),
                        # type aliases, which autodoc shows by name in signatures (documented as data)
                        (r"py:class", r"^(densecell\.[\w.]+\.)?(PoolingMode|Transform|LabelReader|Point|"
                                      r"Normalization|Pretrained|Stage|Scorer|Amp|OptimizerName|MemoryFormat|"
                                      r"Objectives|SamplerName|PrunerName|SearchModeName|HeadName|DatasetName|Trace|"
                                      r"Byte)$")]
