"""What a user reads first: the README (short, every link to a page that exists) and the documentation's generated
references (every recipe field, every command)."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "docs"))

import generate  # noqa: E402  (docs/generate.py)


def test_the_readme_is_short_and_links_only_to_pages_that_exist():
    readme = ROOT / "README.md"
    assert readme.stat().st_size < 12_000
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme.read_text())
    assert links and all((ROOT / link).exists() for link in links if "://" not in link), links


def fields(model, prefix=""):
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        inner = next((t for t in (field.annotation, *getattr(field.annotation, "__args__", ()))
                      if isinstance(t, type) and issubclass(t, BaseModel)), None)
        yield f"{prefix}{name}"
        if inner is not None:
            yield from fields(inner, f"{prefix}{name}.")


def test_every_recipe_field_is_in_the_generated_recipe_reference():
    from densecell.config import SearchConfig, TrainConfig

    page = generate.recipes_page()
    missing = [f for model in (TrainConfig, SearchConfig) for f in fields(model) if f"`{f}`" not in page]
    assert not missing, missing
    undescribed = [row for row in page.splitlines() if row.startswith("| `") and row.endswith("|  |")]
    assert not undescribed, undescribed  # every field says what it is for
    assert "`search.sampler` | str: `random`, `vizier`" in page  # the registry's names are listed


def test_every_command_is_in_the_generated_cli_reference():
    page = generate.cli_page()
    for command in ("train", "eval", "search status", "search worker", "list", "cell show", "save", "push"):
        assert f"## `densecell {command}`" in page, command
    assert "`--config`" in page and "`--data-root`" in page


@pytest.mark.parametrize("page", ["guides/install.md", "guides/which-search.md", "guides/extend.md"])
def test_the_guides_name_only_registered_samplers(page):
    from densecell.core.registry import SAMPLERS

    text = (ROOT / "docs" / page).read_text()
    named = set(re.findall(r"search\.sampler: (\w[\w-]*)", text))
    assert named <= set(SAMPLERS) | {"mine"}, named


@pytest.mark.slow
def test_the_site_builds_with_no_warning(site):
    """``make docs``' build, run by the suite: a broken link or cross-reference, a missing page or a docstring
    Sphinx cannot read fails it; every page of the guides and references is there."""
    folder, code, errors = site
    assert code == 0, errors[-3000:]
    for page in ("index.html", "guides/which-search.html", "_generated/results.html", "_generated/cli.html",
                 "reference/api/search.html"):
        assert (folder / page).is_file(), page


def test_every_option_in_the_cli_reference_says_what_it_is_for():
    page = generate.cli_page()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in page.splitlines()
            if line.startswith("| `--")]
    assert rows and not [row for row in rows if not row[1]], [row for row in rows if not row[1]]


def named_in_guides(patterns, guides=None):
    """(guide, name) for each name the patterns find in the guides and the README (a user's own files and the plugin
    example of extend.md aside)."""
    pages = guides or [*sorted((ROOT / "docs" / "guides").glob("*.md")), ROOT / "README.md"]
    for page in pages:
        for pattern in patterns:
            for name in re.findall(pattern, page.read_text(), re.M):
                if not name.startswith("my-") and name != "mine":
                    yield page.name, name


def test_every_sampler_pruner_and_recipe_a_guide_names_exists_by_that_name():
    """A guide that names a sampler, pruner or recipe the registry does not have (or has renamed) sends a user to an
    error: each name is checked against the registry's current names."""
    from densecell.config import recipes
    from densecell.core.registry import PRUNERS, SAMPLERS

    sampler_lists = [ROOT / "docs" / "guides" / name for name in ("which-search.md", "search-your-data.md")]
    kinds = {
        "sampler": (list(SAMPLERS), [*named_in_guides([r"sampler[=:]\s*`?([a-z0-9][\w-]*)",
                                                       r"--sampler ([a-z0-9][\w-]*)"]),
                                     *named_in_guides([r"^\s*- `([a-z][\w-]*)`[:( ]"], sampler_lists)]),
        "pruner": (list(PRUNERS), list(named_in_guides([r"pruner[=:]\s*`?([a-z0-9][\w-]*)", r"--pruner ([\w-]+)"]))),
        "recipe": ([*recipes(), *(f"{name}.yaml" for name in recipes())],
                   list(named_in_guides([r"--config ([a-z0-9][\w.-]*)"]))),
    }
    wrong = [f"{page}: {kind} {name!r}" for kind, (known, found) in kinds.items() for page, name in found
             if name not in known]
    assert not wrong, wrong
    assert all(found for _, found in kinds.values())  # the patterns still find what the guides name
