"""Proxy fidelity as a command (paper Fig. 3): the same cells under two protocols, Spearman's rho, a plot."""

import json
import math

import pytest
from scipy.stats import spearmanr

from densecell.cell.space import SearchSpace
from densecell.search.fidelity import choose_cells, slug
from helpers import recipe


def base(synthetic_root, tmp_path):
    return ["--config", recipe("search-synthetic.yaml"), "--data-root", synthetic_root,
            "--set", f"output_dir={tmp_path}", "--set", "warmup.iterations=4", "--set", "cache.views=1",
            "--set", "proxy.iterations=6", "--set", "proxy.filters=8", "--set", "rerank.optim.iterations=2"]


@pytest.mark.slow
@pytest.mark.parametrize("against", ["proxy.upsample_logits=false", "end-to-end", "naswot"])
def test_fidelity_scores_the_cells_both_ways_and_plots_them(densecell, synthetic_root, tmp_path, against):
    code, out, err = densecell("fidelity", *base(synthetic_root, tmp_path), "--cells", "5", "--against", against)
    assert code == 0, err
    folder = tmp_path / "search-synthetic" / "fidelity" / slug(against)
    summary = json.loads((folder / "fidelity.json").read_text())
    assert summary["cells"] == 5 and len(summary["pairs"]) == 5 and "Spearman rho" in out
    rho = spearmanr(*zip(*summary["pairs"])).statistic  # scipy's, on the very pairs (nan: one side constant)
    assert summary["spearman_rho"] == (None if math.isnan(rho) else pytest.approx(rho))
    assert (folder / "fidelity.png").stat().st_size > 1000
    scores = (folder / "scores.json").read_text()
    code, _, err = densecell("fidelity", *base(synthetic_root, tmp_path), "--cells", "5", "--against", against)
    assert code == 0 and (folder / "scores.json").read_text() == scores  # a rerun trains nothing again


def test_cells_come_from_a_number_a_file_or_a_folder(tmp_path):
    space = SearchSpace()
    drawn = choose_cells("6", space, seed=1)
    assert len(set(drawn)) == 6 and drawn == choose_cells("6", space, seed=1)
    listing = tmp_path / "cells.json"
    listing.write_text(json.dumps([cell.to_records() for cell in drawn[:5] + drawn[:1]]))  # a repeat counts once
    assert choose_cells(str(listing), space) == drawn[:5]
    folder = tmp_path / "top"
    folder.mkdir()
    for rank, cell in enumerate(drawn[:5], 1):
        (folder / f"rank-{rank:02d}.json").write_text(cell.to_json())
    assert choose_cells(str(folder), space) == drawn[:5]


@pytest.mark.parametrize("cells", ["0", "1", "4", "-3", "few.json", "two-distinct.json", "empty", "not-json.json"])
def test_cells_that_cannot_be_ranked_are_one_line_and_exit_2(densecell, synthetic_root, tmp_path, cells):
    """Spearman's rho needs 3 cells and the top-5 overlap 5; fewer is bad input, not a plot with rho = nan."""
    drawn = choose_cells("5", SearchSpace())
    (tmp_path / "few.json").write_text(json.dumps([c.to_records() for c in drawn[:3]]))
    (tmp_path / "two-distinct.json").write_text(json.dumps([c.to_records() for c in drawn[:2] * 3]))
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-json.json").write_text("[{")
    spec = str(tmp_path / cells) if not cells.lstrip("-").isdigit() else cells
    code, out, err = densecell("fidelity", *base(synthetic_root, tmp_path), "--cells", spec, "--against",
                               "proxy.upsample_logits=false")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert ("at least 5 distinct cells" in err or "not a JSON list" in err) and "Traceback" not in err
    assert not (tmp_path / "search-synthetic").exists()  # refused before any work


def test_bad_against_is_one_line(densecell, synthetic_root, tmp_path):
    code, _, err = densecell("fidelity", *base(synthetic_root, tmp_path), "--cells", "3", "--against", "vibes")
    assert code == 2 and "protocol 'vibes'" in err and err.count("\n") == 1
