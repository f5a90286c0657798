import json

import pytest

from helpers import recipe, tiny_overrides


def test_space_prints_the_papers_size(densecell):
    code, out, _ = densecell("space")
    assert code == 0
    assert "418,414,128,120" in out and "|OP| = 81" in out


def test_space_reduced(densecell):
    code, out, _ = densecell("space", "--branches", "2", "--rates", "1,3", "--grids", "1")
    assert code == 0 and "cells = B! x |OP|^B = 72 " in out


def test_cell_show_lists_branches_and_costs(densecell):
    code, out, _ = densecell("cell", "show", "cityscapes-top1", "--format", "json")
    assert code == 0
    shown = json.loads(out)
    assert [b["input"] for b in shown["branches"]] == [-1, 0, 1, 0, 0]
    assert sum(b["params"] for b in shown["branches"]) == 814_080
    code, out, _ = densecell("cell", "show", "cityscapes-top1", "--backbone", "mobilenetv2_100")
    assert code == 0 and "sep3x3 rate 18x15" in out and "0.356M" in out


def test_cost_paper_table_json(densecell):
    code, out, _ = densecell("cost", "--paper-table", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["backbone"], r["head"]) for r in rows] == [
        ("mobilenetv2_100", "aspp"), ("mobilenetv2_100", "dpc"), ("xception71", "aspp"), ("xception71", "dpc")]
    for row in rows:
        assert {"backbone", "head", "params", "madds", "paper_params", "paper_madds"} <= row.keys()
    assert rows[3]["paper_params"] == 810_000 and rows[3]["params"] == 814_080


def test_cost_of_a_model(densecell):
    code, out, _ = densecell("cost", "--backbone", "mobilenetv2_100", "--head", "aspp",
                       "--image-size", "513", "--format", "json")
    assert code == 0
    parts = {row["part"]: row for row in json.loads(out)}
    assert parts["whole model"]["madds"] > parts["head"]["madds"] > parts["context module (paper convention)"]["madds"]


def test_export_writes_onnx_and_checks_it(densecell, tmp_path):
    target = tmp_path / "m.onnx"
    code, out, _ = densecell("export", target, "--num-classes", "3", "--image-size", "65x97")
    assert code == 0 and target.is_file()
    assert "max |difference|" in out


@pytest.mark.parametrize("args,message", [
    (["cell", "show", "no-such-preset"], "no-such-preset: no such cell file or preset"),
    (["cell", "show", '[{"kernel": 3, "rate": [0, 6], "op": "conv", "input": -1}]'], "field 'rate' must be positive"),
    (["cost", "--cell", '[{"op": "conv"}]'], "branch 0: missing field"),
    (["cost", "--image-size", "12xq"], "not a size"),
    (["cost", "--head", "psp"], "psp"),
    (["cost", "--backbone", "no_such_net"], "not a timm model"),
    (["cost", "--output-stride", "4"], "output_stride"),
    (["space", "--rates", "1,x"], "comma-separated"),
    (["space", "--bogus"], "--bogus"),
])
def test_bad_input_is_one_line_and_exit_2(densecell, args, message):
    code, out, err = densecell(*args)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cell_importance_is_the_l1_norm_of_each_branchs_projection_weights(densecell, synthetic_root, tmp_path):
    from densecell.config import load_config
    from densecell.training.checkpoint import load_run
    from densecell.training.train import train

    overrides = tiny_overrides(synthetic_root, tmp_path, "imp", iterations=1, **{"data.val_split": "null"})
    train(load_config(None, overrides))
    checkpoint = tmp_path / "imp" / "checkpoint.pt"
    code, out, err = densecell("cell", "importance", checkpoint, "--format", "json", "--plot", tmp_path / "imp.png")
    assert code == 0, err
    rows = json.loads(out)
    weight = load_run(checkpoint).model.head.project.conv.weight.detach().abs()
    filters = weight.shape[1] // 5
    assert [r["l1"] for r in rows] == pytest.approx([float(weight[:, i * filters:(i + 1) * filters].sum())
                                                     for i in range(5)])
    assert [r["op"] for r in rows][0] == "sep3x3 rate 1x6" and (tmp_path / "imp.png").stat().st_size > 1000
    code, out, _ = densecell("cell", "importance", checkpoint)
    assert code == 0 and "Y1" in out and "share" in out


def test_a_random_backbone_is_refused_unless_the_recipe_allows_it(densecell, synthetic_root, tmp_path):
    args = ["cache", "--config", recipe("search-synthetic.yaml"), "--data-root", synthetic_root,
            "--set", "warmup=null", "--set", "allow_random_backbone=false", "--set", f"output_dir={tmp_path}"]
    code, _, err = densecell(*args)
    assert code == 2 and err.count("\n") == 1
    assert "neither pretrained weights nor a warm-up" in err and "allow_random_backbone" in err


def test_search_top_refuses_to_write_nothing(densecell, tmp_path, capsys):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="empty", storage=storage, direction="maximize")
    capsys.readouterr()  # Optuna's own line about the new study
    code, _, err = densecell("search", "top", "--k", "0", "--storage", storage, "--study", "empty")
    assert code == 2 and "--k" in err and err.count("\n") == 1
    from densecell.config import StudySettings
    from densecell.search.record import store_settings

    store_settings(optuna.load_study(study_name="empty", storage=storage), StudySettings(cache_dir="x").to_json())
    code, _, err = densecell("search", "top", "--k", "3", "--output", tmp_path / "top", "--storage", storage,
                             "--study", "empty")
    assert code == 2 and "no completed trials yet" in err and err.count("\n") == 1, err
    assert not (tmp_path / "top").exists()


def test_list_prints_every_registry_one_line_each(densecell):
    from densecell.config import recipes
    from densecell.core.registry import REGISTRIES

    code, out, _ = densecell("list")
    assert code == 0
    for name, registry in REGISTRIES.items():
        assert name in out and all(entry in out for entry in registry)
    assert all(recipe in out for recipe in recipes()) and "cityscapes-top1" in out
    code, out, _ = densecell("list", "samplers")
    assert code == 0 and len(out.strip().splitlines()) == len(REGISTRIES["samplers"])
    code, _, err = densecell("list", "spoons")
    assert code == 2 and "unknown kind 'spoons'" in err
