"""The DS4D benchmark's rows: Table 2 letters, variants with overrides, refused specs."""

import pytest

from splat4d.bench.ds4d import DS4DBench, row_config
from splat4d.errors import ConfigError


def test_rows_and_variants():
    name, cfg = row_config("H", "patch")
    assert name == "ds4d" and cfg.fusion == "da" and cfg.features == "patch"
    name, cfg = row_config("C+pseudo_weight=1.0+densify.grow_fraction=0+decouple=false", "patch")
    assert cfg.features == "none" and cfg.pseudo_weight == 1.0 and cfg.densify.grow_fraction == 0.0
    assert cfg.decouple is False
    assert row_config("H", "patch")[1].densify.grow_fraction == 0.025  # variants never leak into other rows
    assert row_config("deformable", "patch")[0] == "deformable"


@pytest.mark.parametrize("rows, match", [
    (("Z",), "Table 2 rows"),
    (("H+nope=1",), "not KEY=VALUE"),
    (("H+pseudo_weight=x",), "takes a float"),
    (("H+densify.grow_fraction=2",), "grow_fraction"),
])
def test_bad_rows_are_refused(rows, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        DS4DBench(rows=rows, out=tmp_path).validate()
