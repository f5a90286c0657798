import pytest

from densecell.config import load_config, load_search_config
from densecell.core.errors import ConfigError
from helpers import CONFIGS, recipe


def test_every_shipped_recipe_validates():
    recipes = sorted(CONFIGS.glob("*.yaml"))
    assert len(recipes) >= 8
    for path in recipes:
        config = (load_search_config if path.stem.startswith("search-") else load_config)(path)
        assert config.name == path.stem


def test_paper_defaults():
    config = load_config()
    assert (config.optim.lr, config.optim.momentum, config.optim.weight_decay, config.optim.power) == \
        (0.01, 0.9, 4e-5, 0.9)
    assert config.model.output_stride == 16 and config.model.cell == "cityscapes-top1"


def test_overrides_parse_values_as_yaml():
    config = load_config(recipe("cityscapes-xception71-dpc.yaml"), ["optim.lr=0.02", "data.crop_size=[513, 513]",
                                                                   "model.decoder=false"])
    assert config.optim.lr == 0.02 and config.data.crop_size == (513, 513) and config.model.decoder is False


@pytest.mark.parametrize("text,overrides,message", [
    ("optim:\n  lrate: 0.1\n", [], "optim.lrate: unknown key"),
    ("optim:\n  lr: fast\n", [], "optim.lr: Input should be a valid number"),
    ("data:\n  batch_size: -4\n", [], "data.batch_size: Input should be greater than or equal to 1"),
    ("model:\n  output_stride: 32\n", [], "model.output_stride: Input should be 8 or 16"),
    ("data:\n  min_scale: 2\n  max_scale: 1\n", [], "min_scale 2.0 is larger than max_scale"),
    ("- a\n- b\n", [], "expected a mapping"),
    ("optim: [\n", [], "not valid YAML"),
    ("", ["optim.lr"], "expected key=value"),
    ("", ["name=has space"], "name: String should match pattern"),
])
def test_bad_configs_give_one_line_naming_file_and_field(tmp_path, text, overrides, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, overrides)
    assert "\n" not in str(info.value)
    if not overrides:
        assert str(info.value).startswith(str(path))


def test_missing_file():
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config("nope.yaml")


def test_a_cell_can_be_written_inline_in_yaml(tmp_path):
    recipe = tmp_path / "inline.yaml"
    recipe.write_text("model:\n  cell:\n    - {kernel: 1, op: conv, input: -1}\n"
                      "    - {grid_size: [2, 4], op: pyramid_pooling, input: 0}\n")
    from densecell.cell.space import Cell

    cell = Cell.from_json(load_config(recipe).model.cell)
    assert len(cell) == 2 and cell[1].op.grid == (2, 4)
