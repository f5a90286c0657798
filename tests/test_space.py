import itertools
import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from densecell.cell.space import (
    BACKBONE,
    FAMILIES,
    Branch,
    Cell,
    CellError,
    Operation,
    SearchSpace,
    aspp_cell,
    load_cell,
    preset_text,
)
from helpers import BAD_CELLS, OUTSIDE_SPACE

TINY = SearchSpace(num_branches=2, rates=(1, 3), grids=(1,))


def test_paper_space_has_81_operations_and_the_papers_size():
    space = SearchSpace()
    assert len(space.operations()) == 81
    assert len(set(space.operations())) == 81
    assert space.size() == 418_414_128_120  # B! * 81^B
    assert space.size() == 120 * 81**5


@pytest.mark.parametrize("space", [TINY, SearchSpace(num_branches=3, rates=(1,), grids=(1, 2))])
def test_size_equals_brute_force_count(space):
    """Enumerate every (input, op) assignment, valid or not, and count those that form a cell of the space."""
    ops = space.operations()
    per_branch = list(itertools.product(range(-2, space.num_branches), ops))
    valid = set()
    for choice in itertools.product(per_branch, repeat=space.num_branches):
        try:
            cell = Cell(tuple(Branch(source, op) for source, op in choice))
        except CellError:
            continue
        assert cell in space
        valid.add(cell)
    assert len(valid) == space.size()


def test_sample_is_uniform_on_a_tiny_space():
    rng = random.Random(0)
    draws = 72 * 200
    counts = Counter(TINY.sample(rng) for _ in range(draws))
    assert len(counts) == TINY.size() == 72
    # each cell's count is Binomial(14400, 1/72): mean 200, sd ~14; 5 sd either side would be a broken sampler
    assert 130 < min(counts.values()) and max(counts.values()) < 270


def test_sample_is_reproducible_and_in_space():
    space = SearchSpace()
    assert space.sample(7) == space.sample(7)
    assert all(space.sample(seed) in space for seed in range(100))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_every_sampled_cell_round_trips_through_json(seed):
    cell = SearchSpace().sample(seed)
    text = cell.to_json()
    again = Cell.from_json(text)
    assert again == cell and hash(again) == hash(cell)
    assert again.to_json() == text


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_mutation_changes_exactly_one_branch_and_stays_in_space(seed):
    space = SearchSpace()
    rng = random.Random(seed)
    cell = space.sample(rng)
    child = space.mutate(cell, rng)
    assert child in space
    assert sum(a != b for a, b in zip(cell, child)) == 1


def test_published_cell_round_trips_byte_for_byte_and_has_the_papers_wiring():
    text = preset_text("cityscapes-top1")
    cell = load_cell("cityscapes-top1")
    assert cell.to_json() == text
    assert [b.input for b in cell] == [BACKBONE, 0, 1, 0, 0]
    assert [b.op for b in cell] == [
        Operation.separable(1, 6),
        Operation.separable(18, 15),
        Operation.separable(6, 3),
        Operation.separable(1, 1),
        Operation.separable(6, 21),
    ]
    assert cell in SearchSpace()


def test_load_cell_accepts_preset_path_text_and_cell(tmp_path):
    cell = load_cell("cityscapes-top1")
    path = tmp_path / "cell.json"
    path.write_text(cell.to_json())
    assert load_cell(path) == load_cell(str(path)) == load_cell(cell.to_json()) == load_cell(cell) == cell


def test_all_operation_kinds_serialise_in_tf_format():
    cell = Cell((
        Branch(-1, Operation.conv1x1()),
        Branch(0, Operation.pooling(2, 8)),
        Branch(1, Operation.separable(3, 21)),
    ))
    assert json.loads(cell.to_json()) == [
        {"kernel": 1, "op": "conv", "input": -1},
        {"grid_size": [2, 8], "op": "pyramid_pooling", "input": 0},
        {"kernel": 3, "rate": [3, 21], "op": "conv", "input": 1},
    ]
    # TF also accepts the list forms of the kernel
    alt = '[{"kernel": [1, 1], "op": "conv", "input": -1}, {"grid_size": [2, 8], "op": "pyramid_pooling", ' \
          '"input": 0}, {"kernel": [3, 3], "rate": [3, 21], "op": "conv", "input": 1}]'
    assert Cell.from_json(alt) == cell


def test_aspp_is_a_cell_of_the_space():
    cell = aspp_cell()
    assert cell in SearchSpace()
    assert all(b.input == BACKBONE for b in cell)




@pytest.mark.parametrize("text,message", BAD_CELLS + OUTSIDE_SPACE)
def test_invalid_cells_raise_cell_error_naming_branch_and_field(text, message):
    with pytest.raises(CellError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        Cell.from_json(text, space=SearchSpace())
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_missing_or_broken_file_names_the_path(tmp_path):
    with pytest.raises(CellError, match="nope.json: no such cell file or preset"):
        load_cell(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1}')
    with pytest.raises(CellError, match="broken.json: not valid JSON"):
        load_cell(broken)


def test_space_membership_is_separate_from_structure():
    cell = Cell.from_json('[{"kernel": 3, "rate": [24, 6], "op": "conv", "input": -1}]')  # Fig. 2's 24x6
    assert cell not in SearchSpace()
    assert cell in SearchSpace(num_branches=1, rates=(6, 24))


def test_a_cell_as_features_for_a_predictor():
    space = SearchSpace()
    row = space.features(load_cell("cityscapes-top1"))
    assert len(row) == 5 * (5 + len(FAMILIES) + 2) + len(FAMILIES)
    assert row[-len(FAMILIES):] == [0.0, 5.0, 0.0]  # the published cell: five separable convolutions
    assert row[:5] == [1.0, 0.0, 0.0, 0.0, 0.0]  # its first branch reads the backbone


def test_the_neighbours_of_a_cell_are_every_one_branch_move_and_mutate_draws_from_them():
    space = SearchSpace(num_branches=3, rates=(1, 6), grids=(1,))
    cell = space.sample(0)
    neighbours = space.neighbours(cell)
    ops = len(space.operations())
    assert len(neighbours) == len(set(neighbours)) == 3 * (ops - 1) + (1 + 2)  # other ops; other inputs of 1 and 2
    assert all(sum(a != b for a, b in zip(n, cell)) == 1 for n in neighbours)
    rng = random.Random(0)
    assert all(space.mutate(cell, rng) in neighbours for _ in range(50))


def test_any_valid_cell_is_accepted_everywhere_a_model_goes(densecell):
    """One rule: a model takes any valid TF DeepLab cell (rate 2x2, one branch); the search space decides only what
    a search proposes. So a cell a user trained can be costed and shown by its own file."""
    odd = '[{"kernel": 3, "rate": [2, 2], "op": "conv", "input": -1}]'
    assert load_cell(odd) not in SearchSpace()
    for args in (["cell", "show", odd, "--backbone", "mobilenetv2_100", "--image-size", "65"],
                 ["cost", "--cell", odd, "--backbone", "mobilenetv2_100", "--image-size", "65"]):
        code, out, err = densecell(*args)
        assert code == 0, err
        assert "2x2" in out or "context" in out
    with pytest.raises(CellError, match="this search space has exactly 5"):
        load_cell(odd, SearchSpace())
