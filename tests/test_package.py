"""The package's shape: what importing a module loads, the public names, one error base, short functions."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import densecell
from densecell.core.errors import DensecellError

SOURCE = Path(densecell.__file__).parent


def loaded_by(module):
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_the_proxy_and_the_search_do_not_load_the_training_loop_or_the_cli():
    proxy = loaded_by("densecell.search.proxy")
    assert not {"densecell.training.train", "rich", "typer", "densecell.cli"} & proxy
    search = loaded_by("densecell.search")
    assert not {"densecell.training.train", "densecell.cli", "typer"} & search
    # every search worker and command imports these: timm (with torchvision), plotting and scikit-learn (seconds
    # between them) load when used
    assert not {"timm", "torchvision", "matplotlib", "sklearn", "scipy.stats"} & (search | loaded_by("densecell.cli"))


def test_the_public_surface():
    assert set(densecell.__all__) <= set(dir(densecell))
    space = densecell.SearchSpace()
    assert space.size() == 418_414_128_120
    cell = densecell.load_cell("cityscapes-top1")
    assert isinstance(cell, densecell.Cell) and len(cell) == 5
    model = densecell.build_model(backbone="mobilenetv2_100", cell=cell, num_classes=3)
    assert isinstance(model.head, densecell.DensePredictionCell)
    assert densecell.build_model(**model.config).config == model.config


@pytest.mark.parametrize("call", [
    lambda: densecell.load_cell("no-such-preset"),
    lambda: densecell.load_cell('[{"op": "conv"}]'),
    lambda: densecell.SearchSpace(num_branches=0),
    lambda: densecell.build_model(backbone="no_such_net"),
    lambda: densecell.build_model(head="psp"),
    lambda: densecell.build_model(output_stride=4),
    lambda: densecell.build_model(pretrained="missing/weights.pth"),
    lambda: densecell.ProxySettings(optimizer="lamb"),
    lambda: densecell.StudySettings(cache_dir="x", sampler="nsga2"),
    lambda: densecell.load_config("no/such/recipe.yaml"),
    lambda: densecell.load_config(None, ["optim.lr=-1"]),
    lambda: __import__("densecell.data", fromlist=["x"]).build_dataset("cityscapes", "/no/such/root", "train"),
    lambda: __import__("densecell.training.checkpoint", fromlist=["x"]).load_run("/no/such/checkpoint.pt"),
    lambda: __import__("densecell.search.cache", fromlist=["x"]).FeatureCache.load("/no/such/cache"),
    lambda: __import__("densecell.search", fromlist=["x"]).load_study("s", "sqlite:////no/such/dir/study.db"),
    lambda: __import__("densecell.config", fromlist=["x"]).DataConfig().require_root(),
])
def test_one_error_base_catches_every_bad_input(call):
    with pytest.raises(DensecellError) as info:
        call()
    assert "\n" not in str(info.value)


def functions(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_60_lines():
    long = [f"{path.relative_to(SOURCE)}:{name} ({lines} lines)" for path in SOURCE.rglob("*.py")
            for name, lines in functions(path) if lines > 60]
    assert not long, long


def test_the_library_leaves_its_callers_process_settings_alone(feature_cache, tmp_path):
    """Importing densecell, creating a study, running a worker in-process and writing a report change none of the
    caller's process-wide settings: Optuna's log level, the warning filters, torch's threads, matplotlib's backend.
    Only the processes densecell starts (and ``densecell.search.own_process()``, an explicit call) set them."""
    import warnings

    import matplotlib
    import optuna
    import scipy.stats  # noqa: F401  (its import adds a warning filter of its own: not ours to count)
    import torch

    from densecell.config import ProxySettings, StudySettings

    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    before = (optuna.logging.get_verbosity(), list(warnings.filters), torch.get_num_threads(),
              matplotlib.get_backend())
    from densecell.search import create_study, run_worker
    from densecell.search.report import write_report

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    settings = StudySettings(cache_dir=str(feature_cache[0]), trials=1, threads=max(1, before[2] + 1),
                              proxy=ProxySettings(iterations=2, batch_size=2, filters=8))
    study = create_study("quiet", storage, settings)
    assert run_worker("quiet", storage, worker_seed=0) == 1
    write_report(study, tmp_path)
    after = (optuna.logging.get_verbosity(), list(warnings.filters), torch.get_num_threads(),
             matplotlib.get_backend())
    optuna.logging.set_verbosity(optuna.logging.INFO)
    assert after == before


@pytest.mark.parametrize("helper", ["densecell.data:build_datasets", "densecell.data:eval_dataset",
                                    "densecell.training.evaluate:predict_files", "densecell.data:EvalTransform",
                                    "densecell.data:TrainTransform", "densecell.data.transforms:normalize"])
def test_no_path_defaults_to_imagenet_statistics(helper):
    """xception71's weights expect [-1, 1] inputs, mobilenetv2_100's ImageNet's: the normalisation is always given
    (from the model, densecell.models.backbones.resolve_normalization), never a default."""
    import importlib
    import inspect

    module, name = helper.split(":")
    parameter = inspect.signature(getattr(importlib.import_module(module), name)).parameters["normalization"]
    assert parameter.default is inspect.Parameter.empty


def is_module(name):
    return (SOURCE.parent.joinpath(*name.split(".")).with_suffix(".py")).exists()


def imports_of(path):
    """The densecell modules a source file imports, at its top or inside its functions (and Optuna, if it does)."""
    package = "densecell" + "".join(f".{part}" for part in path.relative_to(SOURCE).parent.parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{node.module}" if node.module else base
            found |= {f"{module}.{a.name}" if is_module(f"{module}.{a.name}") else module for a in node.names}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found |= {name for name in names if name.split(".")[0] in ("densecell", "optuna")}
    return found


def module_name(path):
    name = "densecell." + ".".join(path.relative_to(SOURCE).with_suffix("").parts)
    return name.removesuffix(".__init__")


def test_no_import_cycle_and_the_layers_hold():
    """Imports go one way (no cycle, imports inside functions counted); the proxy, the supernet and the cache are
    siblings of full training (nothing from evaluate or train); the command line reaches neither Optuna nor the
    owners of the files on disk (locks, cache, study records): it parses, calls the library and prints."""
    graph = {module_name(path): imports_of(path) for path in SOURCE.rglob("*.py")}
    graph = {name: {target for target in targets if target in graph and target != name}
             for name, targets in graph.items()}
    for name in graph:
        graph[name].discard("densecell")
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(graph[node]):
            assert state.get(target) != "open", " -> ".join(trail + [node, target])
            if target not in state:
                visit(target, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    for sibling in ("densecell.search.proxy", "densecell.search.supernet", "densecell.search.cache"):
        assert not {"densecell.training.evaluate", "densecell.training.train"} & graph[sibling], sibling
    cli = imports_of(SOURCE / "cli.py")
    assert not {"optuna", "densecell.core.lock", "densecell.search.cache", "densecell.search.record"} & cli, cli


LAYERS = ("core", "cell", "config", "models", "data", "training", "search")
"""The packages, from the ground floor up (DESIGN.md): a module imports only from its own package and those below."""


def layer(module):
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def test_every_module_lives_in_a_layer_and_no_package_imports_one_above_it():
    """The tree is the map: outside the seven packages only the package's front door, the CLI and ``__main__``;
    no import (at the top or inside a function) reaches a package above the importer's."""
    loose = {module_name(path) for path in SOURCE.glob("*.py")}
    assert loose == {"densecell", "densecell.cli", "densecell.__main__"}, loose
    assert {path.name for path in SOURCE.iterdir() if path.is_dir() and (path / "__init__.py").exists()} == set(LAYERS)
    upward = [f"{name} -> {target}" for path in SOURCE.rglob("*.py") for name in [module_name(path)]
              for target in imports_of(path) if target.startswith("densecell.") and layer(target) > layer(name)]
    assert not upward, upward


def test_models_build_without_importing_a_dataset_or_the_search():
    loaded = loaded_by("densecell.models.model")
    assert not {name for name in loaded if name.startswith(("densecell.data", "densecell.search", "optuna"))}


HIDE_EXTRAS = """
import importlib.abc, importlib.machinery, sys
EXTRAS = {"optuna", "sqlalchemy", "sklearn", "psycopg", "onnx", "onnxruntime", "onnxscript", "tensorboard",
          "markdown", "matplotlib", "cityscapesscripts"}
class Hidden(importlib.abc.MetaPathFinder, importlib.abc.Loader):  # as if the extras were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in EXTRAS:
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise ModuleNotFoundError(f"No module named {module.__name__!r}", name=module.__name__)
sys.meta_path.insert(0, Hidden())
"""


def test_the_core_builds_trains_and_counts_without_the_extras(tmp_path):
    """``pip install densecell`` (no extras, no test extra's cityscapesscripts): build a DPC model, run it, count its
    cost, take a training step, read Cityscapes' classes; and a command that needs an extra says which, in one
    line."""
    script = HIDE_EXTRAS + """
import torch, densecell
from densecell.training.optim import make_optimizer, train_step
model = densecell.build_model(backbone="mobilenetv2_100", head="dpc", cell="cityscapes-top1", num_classes=3,
                              feature_stages=2, decoder=False, filters=16)
assert model(torch.rand(1, 3, 65, 65)).shape == (1, 3, 65, 65)
with torch.device("meta"):
    assert densecell.model_cost(densecell.build_model(backbone="mobilenetv2_100", num_classes=3), (65, 65)).madds > 0
optimizer = make_optimizer(model, "sgd", 0.01, 0.9, 0.0)
loss = train_step(model, optimizer, torch.rand(2, 3, 65, 65), torch.randint(0, 3, (2, 65, 65)), "off")
from densecell.data.cityscapes import train_classes
assert len(train_classes()[0]) == 19  # the label table is the package's own
assert loss > 0 and not any(name.split(".")[0] in EXTRAS for name in sys.modules)
sys.argv = ["densecell", "search", "status", "--storage", "sqlite:///x.db", "--study", "s"]
from densecell.cli import main
main()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.count("\n") == 1 and 'pip install "densecell[search]"' in done.stderr, done.stderr
