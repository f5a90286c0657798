"""Plugins: a package installed beside densecell (here: a folder on PYTHONPATH with its dist-info, which is what
pip leaves) adds its kinds to every densecell process through the ``densecell.plugins`` entry points: the command
line, ``densecell list`` (which names the plugin) and the search's worker processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from densecell.core.registry import SAMPLERS, Registry
from densecell.search import record
from helpers import write_table

SAMPLER_PLUGIN = '''
"""A plugin's sampler: uniform draws, and a mark left by each process that proposes (so the test sees where it ran)."""
import os
from pathlib import Path

from densecell.core.registry import SAMPLERS
from densecell.search.samplers import SpaceSampler


class Marked(SpaceSampler):
    def propose(self, study, trial, past):
        Path(os.environ["PLUGIN_MARKS"], str(os.getpid())).touch()
        return self.space.draw(self.rng, past.taken)


SAMPLERS.register("mine", Marked.create, "uniform draws that leave a mark (a test plugin)")
'''


def install_plugin(site: Path, dist: str, module: str, source: str, value: str | None = None) -> None:
    """A plugin as pip installs it: its module and a dist-info folder with its entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[densecell.plugins]\n{dist} = {value or module}\n")


def with_plugins(site: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def densecell(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "densecell", *args], capture_output=True, text=True,
                          env=with_plugins(site) | env, timeout=600)


@pytest.mark.slow
def test_a_plugins_sampler_is_listed_and_runs_in_the_search_workers(tmp_path):
    site, marks = tmp_path / "site", tmp_path / "marks"
    marks.mkdir()
    install_plugin(site, "densecell-mine", "densecell_mine", SAMPLER_PLUGIN)

    listed = densecell(site, "list", "samplers")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.split()[0] == "mine")
    assert "plugin densecell-mine 0.1" in line and "a test plugin" in line

    table = write_table(tmp_path / "t.json.gz", "complete")
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(yaml.safe_dump({"name": "mine", "output_dir": str(tmp_path / "runs"), "search": {
        "space": f"table={table}", "sampler": "mine", "trials": 8, "workers": 2,
        "lookup": {"seconds": 0.01, "spread": 0.1}}}))
    done = densecell(site, "search", "--config", str(recipe), PLUGIN_MARKS=str(marks))
    assert done.returncode == 0, done.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="mine", storage=f"sqlite:///{tmp_path / 'runs' / 'mine' / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 8
    assert json.loads(record.stored_settings(study))["sampler"] == "mine"
    workers = {t.user_attrs["pid"] for t in complete}
    proposers = {int(path.name) for path in marks.iterdir()}
    assert proposers and proposers <= workers and os.getpid() not in proposers  # the workers asked the plugin

    # the benchmark harness measures it too (extend.md's promise)
    harness = Path(__file__).parent.parent / "benchmarks" / "search_efficiency.py"
    measured = subprocess.run([sys.executable, str(harness), "--table", str(table), "--sampler", "mine", "--seeds", "2",
                               "--budget", "8", "--jobs", "1", "--name", "mine"], capture_output=True, text=True,
                              timeout=600, env=with_plugins(site) | {
                                  "PLUGIN_MARKS": str(marks), "DENSECELL_BENCH_RESULTS": str(tmp_path / "results")})
    assert measured.returncode == 0, measured.stderr[-3000:]
    assert "mine" in measured.stdout


def test_a_broken_plugin_is_one_line_that_names_it_and_can_be_skipped(tmp_path):
    site = tmp_path / "site"
    install_plugin(site, "densecell-broken", "densecell_broken", "raise RuntimeError('no GPU driver')\n")
    done = densecell(site, "list", "heads")
    assert done.returncode != 0 and done.stderr.count("\n") == 1, done.stderr
    assert "plugin densecell-broken 0.1" in done.stderr and "no GPU driver" in done.stderr
    skipped = densecell(site, "list", "heads", DENSECELL_NO_PLUGINS="1")
    assert skipped.returncode == 0 and "aspp" in skipped.stdout


def test_a_plugin_may_name_a_function_to_call(tmp_path):
    site = tmp_path / "site"
    source = ("from densecell.core.registry import HEADS\n"
              "def register():\n    HEADS.register('fancy', lambda *a, **k: None, 'a head from a function')\n")
    install_plugin(site, "densecell-fancy", "densecell_fancy", source, "densecell_fancy:register")
    done = densecell(site, "list", "heads")
    assert done.returncode == 0, done.stderr
    assert any(line.split()[:4] == ["fancy", "plugin", "densecell-fancy", "0.1"] for line in done.stdout.splitlines())


def test_every_entry_says_where_it_came_from():
    registry = Registry("thing", {"built": "json:dumps"})
    registry.register("mine", len)
    assert registry.source("built") == "densecell" and registry.source("mine") == "registered in code"
    assert SAMPLERS.source("random") == "densecell"
