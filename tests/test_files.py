"""aqa.files: atomic writes leave the old file or the new one, never half of one; numbered names are unique."""

import pytest

from aqa.files import numbered, write_atomic, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "a.csv", "old\n")

    def half(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half)
    assert path.read_text() == "old\n" and [p.name for p in path.parent.iterdir()] == ["a.csv"]
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n"


def test_numbered_names_are_unique_and_keep_first_comers():
    assert numbered(["a", "b", "a", "a_2", "a"]) == ["a", "b", "a_2", "a_2_2", "a_3"]
    assert numbered(["pesq", "run"], taken=["pesq", "score"]) == ["pesq_2", "run"]
