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
