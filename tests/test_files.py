"""Atomic writes: a file is either its old self or its whole new self, whatever happens in between."""

import pytest

from densecell.core.errors import FileOperationError
from densecell.core.files import atomic_path, write_text


def test_a_written_file_appears_whole_and_leaves_no_partial(tmp_path):
    target = tmp_path / "sub" / "result.json"
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary != target and not target.exists()
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_a_failure_inside_keeps_the_old_file_and_removes_the_partial(tmp_path):
    target = write_text(tmp_path / "result.json", "old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_place_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    blocker = write_text(tmp_path / "not-a-folder", "a file where a folder should be")
    with pytest.raises(FileOperationError, match="not-a-folder") as info:
        write_text(blocker / "x.txt", "data")
    assert "\n" not in str(info.value) and blocker.read_text() == "a file where a folder should be"
