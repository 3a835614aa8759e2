"""Outputs a clinician reads: the thickness CSV's `supported` column, ETDRS `measured`, and
laterality in every form eyepy gives it."""

import csv
import enum

import numpy as np
import pytest

from octseg_jax import layers_geometry as geom
from octseg_jax import volume_report
from octseg_jax.data import synthetic, volumes
from octseg_jax.errors import InputError


@pytest.mark.parametrize("value, want", [
    ("OD", "OD"), ("os", "OS"), ("R", "OD"), ("L", "OS"), ("Left", "OS"), ("82", "OD"),
    ("76", "OS"), (76, "OS"), (np.int64(82), "OD"), (b"L", "OS"), (None, None), ("", None)])
def test_laterality_in_every_form(value, want):
  assert volumes.read_laterality(value) == want


def test_laterality_enums_and_unreadable_values():
  Side = enum.Enum("Side", {"OD": "R", "OS": "L"})
  assert volumes.read_laterality(Side.OS) == "OS"
  Code = enum.Enum("Code", {"right": 82, "left": 76})
  assert volumes.read_laterality(Code.left) == "OS"
  with pytest.raises(ValueError, match="'X'"):
    volumes.read_laterality("X")
  notes = []
  with pytest.raises(InputError, match="set --laterality"):
    volumes._laterality("X", None, notes, "scan.e2e")
  assert volumes._laterality("X", "OS", notes, "scan.e2e") == "OS" and "'X'" in notes[0]
  assert volumes._laterality("76", None, [], "scan.e2e") == "OS"


def test_etdrs_measured_is_below_1_where_part_of_a_sector_has_no_thickness():
  vol, truth = synthetic.generate_volume(61, 160, 192, scale_mm=(0.1, 0.00387, None),
                                         render_images=False)
  bounds = np.stack([geom.boundaries_from_labels(m) for m in vol.masks])
  full = volume_report.analyse(vol, bounds, truth["fovea_mm"])
  np.testing.assert_allclose(full["etdrs_measured"], full["etdrs_coverage"])   # all known
  # No boundary in the B-scans above the fovea: the superior sectors lose their thickness.
  above = vol.positions_mm > truth["fovea_mm"][1] + 1.0
  holes = bounds.copy()
  holes[above] = np.nan
  part = volume_report.analyse(vol, holes, truth["fovea_mm"])
  measured = dict(zip(("C0", "S1", "N1", "I1", "T1", "S2", "N2", "I2", "T2"),
                      part["etdrs_measured"]))
  np.testing.assert_allclose(part["etdrs_coverage"], full["etdrs_coverage"])  # still in reach
  cover = dict(zip(measured, part["etdrs_coverage"]))
  assert measured["S2"] < cover["S2"] - 0.3 and measured["S1"] < cover["S1"]
  assert measured["I2"] == cover["I2"] and measured["C0"] == cover["C0"]
  empty = part["etdrs_measured"] < 0.5
  assert np.isnan(part["etdrs_um"][empty]).all() and np.isfinite(part["etdrs_um"][~empty]).all()


def test_thickness_csv_marks_supported_columns(trained_workdir, tmp_path):
  from octseg_jax import predict
  from octseg_jax.io_utils import write_npz
  s = synthetic.generate(2, 96, 64, seed=11)
  write_npz(str(tmp_path / "scans.npz"), images=s.images)
  predict.run(trained_workdir[0], str(tmp_path / "scans.npz"), str(tmp_path / "out"),
              figures="none")
  with np.load(tmp_path / "out" / "scans.npz") as d:
    want = geom.column_is_ordered(d["pred"]) & np.isfinite(d["boundaries"]).all(axis=1)
  rows = list(csv.reader(open(tmp_path / "out" / "scans_thickness.csv")))
  col = rows[0].index("supported")
  got = np.array([r[col] == "1" for r in rows[1:]]).reshape(2, 64)
  np.testing.assert_array_equal(got, want)
  for r, ok in zip(rows[1:], got.ravel()):
    assert all((cell != "") == ok for cell in r[2:col])
