"""Every value a command needs is checked before any work starts (RELIABILITY.md, "checked first"): one line that
names the bad value, exit 2, and nothing trained, cached or created."""

import optuna
import pytest
import yaml

from helpers import recipe


def nothing_made(folder):
    return not folder.exists() or not any(folder.rglob("*"))


def one_line(code, err, *words):
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_negative_counts_are_refused(densecell, tmp_path):
    one_line(*densecell("synthetic", tmp_path / "data", "--train", "-1")[::2], "--train", "0")
    one_line(*densecell("synthetic", tmp_path / "data", "--val", "-3")[::2], "--val")
    assert not (tmp_path / "data").exists()
    code, _, err = densecell("rerank", "--config", "search-synthetic", "--top", "-1")
    one_line(code, err, "--top", "0")


@pytest.mark.parametrize("args,words", [
    (["predict", "x.png", "--checkpoint", "nowhere", "--scales", "nan"], ["scale nan"]),
    (["predict", "x.png", "--checkpoint", "nowhere", "--scales", "1,inf"], ["scale inf"]),
    (["predict", "x.png", "--checkpoint", "nowhere", "--scales", "-1"], ["scale -1"]),
    (["predict", "x.png", "--checkpoint", "nowhere", "--window", "1x1"], ["window 1x1", "output stride"]),
    (["eval", "--checkpoint", "nowhere", "--output-stride", "4"], ["output_stride", "evaluation setting"]),
    (["cell", "importance", "nowhere", "--plot", "."], ["a folder"]),
    (["cell", "importance", "nowhere", "--plot", "plots.d"], ["plots.d", ".png"]),
    (["search", "worker", "--storage", "sqlite:///{tmp}/w.db", "--device", "nope"], ["device 'nope'"]),
    (["search", "worker", "--storage", "sqlite:///{tmp}/w.db", "--device", "cuda:7"], ["device 'cuda:7'"]),
])
def test_bad_values_are_named_before_any_work(densecell, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    code, _, err = densecell(*(a.format(tmp=tmp_path) for a in args))
    one_line(code, err, *words)
    assert not (tmp_path / "w.db").exists() and not (tmp_path / "predictions").exists()


def test_a_recipe_that_is_a_folder_or_not_utf8_is_named(densecell, tmp_path):
    one_line(*densecell("search", "status", "--config", tmp_path)[::2], str(tmp_path), "a folder")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    one_line(*densecell("search", "status", "--config", latin)[::2], "latin.yaml", "UTF-8")


def test_read_only_commands_create_nothing(densecell, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"name": "mine", "output_dir": str(tmp_path / "runs")}))
    for command in (["search", "status"], ["report"], ["search", "top"]):
        code, _, err = densecell(*command, "--config", mine)
        one_line(code, err, "no study 'mine'", "does not exist")
    assert not (tmp_path / "runs").exists()


def test_a_study_whose_settings_are_not_json_is_named(densecell, tmp_path, capsys):
    from densecell.search.record import store_settings

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    store_settings(optuna.create_study(study_name="garbled", storage=storage), "{not json")
    capsys.readouterr()
    one_line(*densecell("search", "status", "--storage", storage, "--study", "garbled")[::2], "study 'garbled'",
             "stored settings are unreadable")


def test_the_search_checks_its_storage_data_options_and_backbones_before_the_cache(densecell, synthetic_root,
                                                                                  tmp_path):
    base = ["--config", recipe("search-synthetic.yaml"), "--data-root", synthetic_root, "--set",
            f"output_dir={tmp_path / 'runs'}"]
    cases = [
        (["search", *base, "--set", "search.storage=postgresq://me@db/search"], ["postgresq"]),
        (["search", *base, "--set", "search.storage=not a url"], ["not a database URL"]),
        (["cache", *base, "--set", "data.options.bogus=1"], ["data.options.bogus", "unknown option"]),
        (["cache", *base, "--set", "backbone.backbone=no_such_net"], ["no_such_net", "not a timm model"]),
        (["fidelity", *base, "--against", "backbone=no_such_net"], ["no_such_net", "not a timm model"]),
    ]
    for args, words in cases:
        code, _, err = densecell(*args)
        one_line(code, err, *words)
        assert nothing_made(tmp_path / "runs"), args


def test_a_folder_datasets_bad_palette_stops_training_before_it_starts(densecell, tmp_path):
    import numpy as np

    from helpers import write_folder

    root = write_folder(tmp_path / "mine", {"a": np.zeros((32, 32), np.uint8)},
                        "classes: [a, b]\npalette: [[1, 2], [3, 4, 5]]\n")
    code, _, err = densecell("train", "--data-root", root, "--set", "data.dataset=folder", "--set",
                             f"output_dir={tmp_path / 'runs'}", "--set", "model.pretrained=null", "--set",
                             "allow_random_backbone=true")
    one_line(code, err, "classes.yaml", "palette[0]", "[1, 2]")
    assert nothing_made(tmp_path / "runs")


def test_a_recipe_of_the_other_kind_names_the_command_that_reads_it(densecell):
    one_line(*densecell("train", "--config", "search-synthetic")[::2], "a search recipe", "densecell search reads it")
    one_line(*densecell("search", "status", "--config", "synthetic-mobilenetv2-dpc")[::2], "a training recipe",
             "densecell train reads it")
