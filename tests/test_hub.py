"""The one rule for what a model source is (a path is a file or a folder, never a Hub id; a Hub id is owner/name
that is not a path), and a damaged saved folder: one line that names the file at fault, exit code 2."""

import json

import pytest

from densecell.core.errors import CheckpointError, ModelError
from densecell.models.hub import Source, locate
from densecell.models.model import build_model, from_pretrained


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "model"
    build_model(feature_stages=2, decoder=False, filters=8, num_classes=3).save_pretrained(folder)
    return folder


def copy(saved, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for path in saved.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_a_path_that_exists_is_never_a_hub_id(tmp_path, saved, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name").mkdir()  # a folder that looks like a repo id
    with pytest.raises(CheckpointError, match="neither a run folder"):
        locate("owner/name")
    assert locate(saved) == Source("saved", str(saved))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"x")
    assert locate("run") == Source("checkpoint", str(__import__("pathlib").Path("run") / "checkpoint.pt"))
    assert locate("someone/tiny-dpc") == Source("hub", "someone/tiny-dpc")
    for not_an_id in ("a/b/c", "./x", "no-slash", "runs/x.pt/extra/y"):
        with pytest.raises(CheckpointError, match="no such file or folder"):
            locate(not_an_id)


@pytest.mark.parametrize("damage,file,message", [
    (lambda f: (f / "config.json").write_text("{not json"), "config.json", "not valid JSON"),
    (lambda f: (f / "config.json").write_text(json.dumps(json.loads((f / "config.json").read_text())
                                                         | {"backbone": "no_such_net"})), "config.json",
     "backbone 'no_such_net' is not a timm model"),
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:1000]),
     "model.safetensors", "not a readable safetensors file"),
    (lambda f: (f / "model.safetensors").unlink(), "model.safetensors", "no model.safetensors"),
    (lambda f: (f / "training.json").write_text("[1, 2"), "training.json", "not valid JSON"),
])
def test_a_damaged_saved_folder_is_one_line_naming_the_file_and_exit_2(saved, tmp_path, densecell, damage, file,
                                                                        message):
    folder = copy(saved, tmp_path)
    (folder / "training.json").write_text(json.dumps({"iteration": 2}))
    damage(folder)
    with pytest.raises((CheckpointError, ModelError), match=message) as info:
        from_pretrained(folder)
    assert "\n" not in str(info.value) and (file in str(info.value))
    code, _, err = densecell("cell", "importance", folder, "--format", "json")
    assert code == 2 and err.count("\n") == 1 and message.split()[0] in err and file in err, err
