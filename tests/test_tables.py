"""Ground-truth tables: the shared format read and checked (one-line errors naming the file and the field), the
exact median of random search's best, and the table's space."""

import gzip
import itertools
import json
import random

import numpy as np
import pytest

from densecell.search import DPCSpace, Table, TableError, TableSpace, load_table
from helpers import write_table


def write(path, data, zipped=True):
    if zipped:
        with gzip.open(path, "wt") as handle:
            json.dump(data, handle)
    else:
        path.write_text(json.dumps(data))
    return path


def small(rows=None, **extra):
    params = [{"name": "a", "choices": [1, 2]}, {"name": "b", "choices": ["x", "y"]}]
    return {"name": "small", "space": {"params": params},
            "rows": rows if rows is not None else [{"x": [1, "x"], "score": 1.0, "flops": 2.0},
                                                   {"x": [2, "y"], "score": 3.0, "flops": 4.0}], **extra}


@pytest.mark.parametrize("data,message", [
    ([1, 2], "expected a JSON object"),
    ({"rows": []}, "field 'space.params'"),
    (small([]), "field 'rows' must be a non-empty list"),
    (small([{"x": [1], "score": 1.0}]), r"field 'rows\[0\].x' must be a list of 2 values"),
    (small([{"x": [3, "x"], "score": 1.0}]), r"field 'rows\[0\].x': a = 3 is not one of its choices"),
    (small([{"x": [1, "x"], "score": "high"}]), r"field 'rows\[0\].score' must be a finite number"),
    (small([{"x": [1, "x"], "score": float("nan")}]), r"field 'rows\[0\].score' must be a finite number"),
    ({"space": {"params": [{"name": "a"}]}, "rows": [{"x": [1], "score": 1}]}, r"field 'space.params\[0\]'"),
])
def test_a_bad_table_is_one_line_naming_the_file_and_the_field(tmp_path, data, message):
    path = write(tmp_path / "t.json.gz", data)
    with pytest.raises(TableError, match=message) as info:
        load_table(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_missing_or_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(TableError, match="no such table file"):
        load_table(tmp_path / "none.json.gz")
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    with pytest.raises(TableError, match="not a \\(gzipped\\) JSON table"):
        load_table(tmp_path / "bad.json.gz")


def test_plain_json_extras_and_a_repeated_architecture(tmp_path):
    rows = [{"x": [1, "x"], "score": 1.0, "flops": 2.0, "note": "a"}, {"x": [2, "y"], "score": 3.0, "flops": 4.0},
            {"x": [1, "x"], "score": 2.0, "flops": 2.0}]
    table = load_table(write(tmp_path / "t.json", small(rows, complete=False), zipped=False))
    assert table.points == [(1, "x"), (2, "y")] and list(table.scores) == [1.5, 3.0]  # measured twice: the mean
    assert list(table.extras) == ["flops"] and table.rungs is None and not table.complete


def test_random_search_median_best_is_exact():
    """Against the distribution of the best of R draws without replacement, counted over all subsets."""
    table = Table(name="t", params=(), points=list(range(9)), scores=np.array([5, 1, 4, 4, 2, 8, 7, 3, 6.0]),
                  complete=True)
    for draws in range(1, 10):
        bests = sorted(max(c) for c in itertools.combinations(table.scores, draws))
        low = bests[(len(bests) - 1) // 2]  # the lower median of all equally likely subsets' bests
        assert table.random_median_best(draws) == low, draws


def test_the_space_of_a_table(tmp_path):
    table = load_table(write_table(tmp_path / "t.json.gz", "sample"))
    space = TableSpace(table)
    rng = random.Random(0)
    assert all(space.sample(rng) in space for _ in range(20))
    encoded = space.encode(table.points[:3])
    assert encoded.shape == (3, 6) and encoded.min() >= 0 and encoded.max() <= 1  # numeric choices: one scaled value
    point = table.points[0]
    nearest = space.neighbours(point)
    distance = min(sum(a != b for a, b in zip(p, point)) for p in table.points if p != point)
    assert nearest and all(sum(a != b for a, b in zip(p, point)) == distance for p in nearest)


def test_a_dpc_table_uses_the_dpc_space(tmp_path):
    table = load_table(write_table(tmp_path / "t.json.gz", "dpc"))
    space = TableSpace(table)
    assert table.dpc is not None and table.rungs and sorted(table.rungs[0]) == [20, 40, 60, 80, 100]
    assert len(table.meta["repeats"]) == 4
    dpc = DPCSpace(table.dpc)
    assert (space.encode(table.points[:2]) == dpc.encode(table.points[:2])).all()
    assert space.mutate(table.points[0], random.Random(0)) in dpc.neighbours(table.points[0])


def test_random_search_reaches_a_target_at_its_exact_hitting_point():
    """n*, against brute force: the fewest draws for which at least half of all equally likely subsets hold a row
    at or above the target."""
    scores = np.array([5, 1, 4, 4, 2, 8, 7, 3, 6.0])
    table = Table(name="t", params=(), points=list(range(9)), scores=scores, complete=True)
    for target in sorted(set(scores)):
        brute = next(n for n in range(1, 10)
                     if 2 * sum(max(c) >= target for c in itertools.combinations(scores, n))
                     >= len(list(itertools.combinations(scores, n))))
        assert table.random_reach(target) == brute, target
    assert table.random_reach(table.random_median_best(5)) <= 5
    with pytest.raises(ValueError):
        table.random_reach(9.0)


def test_the_noise_level_comes_from_repeats_else_matches_the_floor(tmp_path):
    from scipy.stats import spearmanr

    from densecell.search.tables import NOISE_FLOOR_RHO

    rng = np.random.default_rng(0)
    rows = [{"x": [a, b], "score": float(rng.normal())} for a in range(30) for b in range(30)]
    params = [{"name": "a", "choices": list(range(30))}, {"name": "b", "choices": list(range(30))}]
    plain = load_table(write(tmp_path / "p.json.gz", {"space": {"params": params}, "rows": rows}))
    sigma = plain.noise_sigma()
    twice = [spearmanr(plain.scores + rng.normal(0, sigma, len(plain)), plain.scores + rng.normal(0, sigma, len(plain)))
             .statistic for _ in range(20)]
    assert abs(np.mean(twice) - NOISE_FLOOR_RHO) < 0.02
    repeats = [[0.5, 0.52], [0.6, 0.58], [0.7, 0.73], [0.4, 0.39]]
    measured = load_table(write(tmp_path / "r.json.gz", {"space": {"params": params}, "rows": rows,
                                                         "repeats": repeats}))
    assert measured.noise_sigma() == pytest.approx(np.std([a - b for a, b in repeats], ddof=1) / np.sqrt(2))


def test_a_tables_free_columns_and_a_dpc_cells_counted_costs(tmp_path):
    data = small(feature_cost_in_proxy_steps={"flops": 0})
    data["rows"] = [dict(row, zen=float(i)) for i, row in enumerate(data["rows"])]
    data["feature_cost_in_proxy_steps"]["zen"] = 3.0  # priced: not free
    space = TableSpace(load_table(write(tmp_path / "t.json.gz", data)))
    assert space.table.free_columns() == ["flops"]
    assert space.costs(space.table.points).tolist() == [[0.5], [1.0]]  # ranks in [0, 1]
    dpc = DPCSpace()
    points = [dpc.sample(random.Random(seed)) for seed in range(3)]
    costs = dpc.costs(points)
    assert costs.shape == (3, 2) and np.isfinite(costs).all()


def test_a_dpc_table_is_checked_against_its_dpc_space(tmp_path):
    """An operation outside the space, or a space.dpc that disagrees with the parameters: one line on loading,
    before any search starts."""
    import gzip as gz

    path = write_table(tmp_path / "d.json.gz", "dpc")
    with gz.open(path, "rt") as handle:
        data = json.load(handle)
    outside = json.loads(json.dumps(data))
    outside["space"]["params"][1]["choices"].append("sep3x3_2x2")
    outside["rows"][0]["x"][1] = "sep3x3_2x2"
    with pytest.raises(TableError, match=r"space.params\[1\].choices.*'sep3x3_2x2' is outside"):
        load_table(write(tmp_path / "o.json.gz", outside))
    fewer = json.loads(json.dumps(data))
    fewer["space"]["dpc"] = {"num_branches": 3}
    with pytest.raises(TableError, match="a DPC table of 3 branches has the parameters"):
        load_table(write(tmp_path / "f.json.gz", fewer))
