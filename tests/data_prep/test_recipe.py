"""Every ``aqa prep`` recipe shares one skeleton: bad input is one ``aqa prep NAME: error: ...`` line, exit 2."""

from __future__ import annotations

import importlib

import pytest

from data_prep import RECIPES

# per recipe, arguments that parse but name input that does not exist (or a value out of range)
BAD_INPUT = {
    "codec": ["--src", "{tmp}/absent", "--out", "{tmp}/out"],
    "jnd": ["--src", "{tmp}/absent", "--out", "{tmp}/out"],
    "haaqi": ["--src", "{tmp}/absent", "--out", "{tmp}/out"],
    "import": ["--src", "{tmp}/absent.csv", "--format", "csv", "--csv-out", "{tmp}/test.csv"],
    "render": ["--kind", "bright", "--out", "{tmp}/out", "--n", "-1"],
    "listening": ["--src", "{tmp}/absent", "--out", "{tmp}/out"],
}


def test_every_recipe_has_a_bad_input_case():
    assert set(BAD_INPUT) == set(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_bad_input_is_one_error_line_and_exit_2(name, tmp_path, capsys):
    main = importlib.import_module(RECIPES[name]).main
    code = main([a.format(tmp=tmp_path) for a in BAD_INPUT[name]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"aqa prep {name}: error: "), err
