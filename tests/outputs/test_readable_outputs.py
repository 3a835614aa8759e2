"""Outputs a clinician reads: the thickness CSV's `supported` column, ETDRS `measured`, and
laterality in every form eyepy gives it."""

import csv
import enum
import os
from types import SimpleNamespace

import numpy as np
import pytest

from octseg_jax.geometry import boundaries as geom
from octseg_jax.outputs import volume_report
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
  assert volumes._laterality("X", "OS", notes, "scan.e2e") == ("OS", "--laterality")
  assert "'X'" in notes[0]
  assert volumes._laterality("76", None, [], "scan.e2e") == ("OS", "file")
  assert volumes._laterality("76", "OS", [], "scan.e2e") == ("OS", "file")      # they agree
  with pytest.raises(InputError) as refused:                       # refused, not ignored
    volumes._laterality("76", "OD", [], "scan.e2e")
  assert str(refused.value) == ("--laterality=OD: scan.e2e has its own laterality (OS) and "
                                "they disagree")
  assert volumes._laterality(None, None, [], "scan.e2e") == ("OD", volumes.LATERALITY_ASSUMED)
  said = [volume_report.laterality_text(SimpleNamespace(laterality=side, laterality_source=src),
                                        "why") for side, src in
          (("OS", "file"), ("OS", "--laterality"), ("OD", volumes.LATERALITY_ASSUMED))]
  assert said == ["OS (laterality from the file)", "OS (laterality from --laterality)",
                  "OD ASSUMED (why)"]                      # console and maps title


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


def test_etdrs_supported_is_the_share_of_columns_in_the_model_s_own_order(tmp_path, capsys):
  """Every column supported: 1 in every sector, the same thickness as without the flag; the
  B-scans superior of the fovea unsupported: S2 (all above) 0, I2 and C0 (none above) 1, the
  sectors between in between; the CSV's `supported` column and the console line say so."""
  vol, truth = synthetic.generate_volume(61, 160, 192, scale_mm=(0.1, 0.00387, None),
                                         render_images=False)
  bounds = np.stack([geom.boundaries_from_labels(m) for m in vol.masks])
  plain = volume_report.analyse(vol, bounds, truth["fovea_mm"])
  everywhere = np.ones(bounds[:, 0].shape, bool)
  full = volume_report.analyse(vol, bounds, truth["fovea_mm"], supported=everywhere)
  np.testing.assert_array_equal(full["etdrs_supported"], np.ones(9))
  np.testing.assert_array_equal(full["etdrs_um"], plain["etdrs_um"])
  np.testing.assert_array_equal(full["maps"], plain["maps"])
  above = vol.positions_mm > truth["fovea_mm"][1] + 0.6             # outside C0 (0.5 mm)
  part = volume_report.analyse(vol, bounds, truth["fovea_mm"],
                               supported=everywhere & ~above[:, None])
  share = dict(zip(("C0", "S1", "N1", "I1", "T1", "S2", "N2", "I2", "T2"),
                   part["etdrs_supported"]))
  assert share["S2"] == 0 and share["I2"] == 1 and share["C0"] == 1 and share["I1"] == 1
  assert 0 < share["S1"] < 1 and 0 < share["N2"] < 1 and 0 < share["T2"] < 1
  assert volume_report.support_text(full) == ("; supported (the model's own layer order) in "
                                              "100%-100% of a sector's measured part")
  assert "below 50%" in volume_report.support_text(part)
  volume_report.write_etdrs_csv(str(tmp_path / "e.csv"), part, ("OD", "file"))
  rows = list(csv.DictReader(open(tmp_path / "e.csv")))
  assert [r["supported"] for r in rows] == [f"{v:.3f}" for v in part["etdrs_supported"]]


def test_fluid_is_not_measured_where_no_retina_was_found(tmp_path):
  """A cyst superior of the fovea, and no boundary in the B-scans above it: the fluid there
  is unknown, not 0. The fluid map is blank exactly where the total-thickness map is, sector
  volumes are empty where the thickness is, and the disc's total is empty."""
  cyst = (0.0, 1.0, 0.4, 0.4, 5.0)
  vol, truth = synthetic.generate_volume(61, 160, 192, scale_mm=(0.1, 0.00387, None),
                                         render_images=False, cysts=[cyst])
  bounds = np.stack([geom.boundaries_from_labels(m) for m in vol.masks])
  fluid_um = volume_report.fluid_height_um(truth["fluid"], 3.87)
  full = volume_report.analyse(vol, bounds, truth["fovea_mm"], fluid_um)
  assert np.isfinite(full["fluid_map_um"]).sum() == np.isfinite(full["maps"][-1]).sum()
  assert full["fluid_mm3_total"] > 0 and np.isfinite(full["etdrs_fluid_mm3"]).all()
  holes = bounds.copy()
  holes[vol.positions_mm > truth["fovea_mm"][1] + 0.5] = np.nan      # the cyst's B-scans too
  part = volume_report.analyse(vol, holes, truth["fovea_mm"], fluid_um)
  np.testing.assert_array_equal(np.isnan(part["fluid_map_um"]), np.isnan(part["maps"][-1]))
  assert np.isnan(part["fluid_map_um"]).sum() > np.isnan(full["fluid_map_um"]).sum()
  total = volume_report.MAP_NAMES.index("total")
  np.testing.assert_array_equal(np.isnan(part["etdrs_fluid_mm3"]),
                                np.isnan(part["etdrs_um"][:, total]))
  sectors = dict(zip(("C0", "S1", "N1", "I1", "T1", "S2", "N2", "I2", "T2"),
                     part["etdrs_fluid_mm3"]))
  assert np.isnan(sectors["S2"]) and sectors["I1"] == 0 and sectors["I2"] == 0
  assert np.isnan(part["fluid_mm3_total"])
  volume_report.write_etdrs_csv(str(tmp_path / "e.csv"), part, ("OD", "file"))
  rows = list(csv.DictReader(open(tmp_path / "e.csv")))
  assert rows[5]["sector"] == "S2" and rows[5]["fluid_mm3"] == "" and rows[5]["total_um"] == ""
  assert rows[-1]["sector"] == "total" and rows[-1]["fluid_mm3"] == ""
  assert rows[3]["sector"] == "I1" and rows[3]["fluid_mm3"] == "0.0000"


def test_thickness_csv_leaves_fluid_empty_where_no_retina_was_found():
  from octseg_jax.modes import predict
  bounds = np.tile(np.arange(8.0)[:, None], (2, 1, 3)) * 5              # [2, 8, 3]
  bounds[0, 0, 1] = np.nan                                             # no ILM in column 1
  bounds[1, 7, :] = np.nan                                             # no BM in scan 1
  fluid = geom.fluid_where_measured(np.array([[1.0, 4.0, 2.0], [3.0, 3.0, 3.0]]), bounds)
  np.testing.assert_array_equal(np.isnan(fluid), [[False, True, False], [True, True, True]])
  cols = predict.extra_columns({"fluid_um": fluid, "boundary_sd_um": None}, None)
  assert cols == {"fluid_um": [["1.00", "", "2.00"], ["", "", ""]]}   # no per-scan column
  assert [predict.fluid_area_text(f, 0.01) for f in fluid] == ["0.00003", ""]   # 3 um x 0.01 mm
  assert predict.fluid_area_text(fluid[0], None) == ""                # no lateral scale


def _trained(views: int, position_sd_um: float = 0.0, uncertain_um: float = 7.0):
  """A stand-in for a loaded model with `views` views and those flag thresholds."""
  settings = SimpleNamespace(uncertain_um=uncertain_um, uncertain_position_sd_um=position_sd_um)
  return SimpleNamespace(num_views=views, config=SimpleNamespace(predict=settings))


def _flag_of(views: int, position_sd_um: float = 0.0, uncertain_um: float = 7.0):
  """predict.column_flag of a model with `views` views."""
  from octseg_jax.modes import predict
  return predict.column_flag(_trained(views, position_sd_um, uncertain_um))


def test_predict_notes_a_missing_flag_and_an_option_the_ensemble_does_not_use(capsys):
  from octseg_jax.modes import predict
  field = "predict.uncertain_position_sd_um"
  predict.print_flag_note(_trained(2, 5.0), {field: 5.0})      # given for a spread-flag ensemble
  predict.print_flag_note(_trained(1, 0.0), {})                # a single model, no flag
  predict.print_flag_note(_trained(2, 0.0, 0.0), {})           # an ensemble, no flag
  predict.print_flag_note(_trained(1, 5.0), {field: 5.0})      # a single model's flag: silent
  predict.print_flag_note(_trained(2, 5.0), {})                # set by settings: silent
  predict.print_flag_note(_trained(2, 5.0, 0.0), {field: 5.0})  # an ensemble's position sd flag
  predict.print_flag_note(_trained(1, 5.0), {"predict.uncertain_um": 3.0})   # one view: no spread
  predict.print_flag_note(_trained(2, 5.0, 3.0), {"predict.uncertain_um": 3.0})  # used: silent
  assert capsys.readouterr().out.splitlines() == [
      f"note: this ensemble flags columns by its members' spread (--config.predict."
      f"uncertain_um); --config.{field} applies where that is 0, and to a single model",
      f"note: no `uncertain` flag: a single model flags columns by its boundaries' position sd "
      f"where --config.{field} is set (0: no flag; pretrained/ sets it for "
      "--config.predict.members=1)",
      f"note: no `uncertain` flag: --config.predict.uncertain_um (the members' spread) and "
      f"--config.{field} (the position sd) are both 0",
      f"note: --config.predict.uncertain_um (the members' spread) applies to an ensemble; a "
      f"single model flags columns by its boundaries' position sd, where --config.{field} is set"]


def test_uncertain_is_empty_where_a_column_is_not_supported():
  """An ensemble flags by the members' spread, a single model (or an ensemble whose
  predict.uncertain_um is 0) by its position sd where predict.uncertain_position_sd_um is set
  (here 7 um; not at all where it is 0)."""
  from octseg_jax.modes import predict
  sd = np.zeros((1, 8, 4))
  sd[0, 3, [0, 2]] = 9.0                                              # columns 0 and 2 spread
  out = {"fluid_um": None, "boundary_sd_um": sd, "boundary_position_sd_um": sd[:, :, ::-1],
         "supported": np.array([[True, True, False, True]])}
  cols = predict.extra_columns(out, _flag_of(2))
  assert cols["uncertain"] == [["1", "0", "", "0"]]
  assert cols["uncertain_threshold_um"] == [["7"] * 4]
  assert cols["uncertain_by"] == [["boundary_sd_um"] * 4]
  single = predict.extra_columns(out, _flag_of(1, 7.0))               # columns 1 and 3 spread
  assert single["uncertain"] == [["0", "1", "", "1"]]
  assert single["uncertain_by"] == [["boundary_position_sd_um"] * 4]
  by_position = predict.extra_columns(out, _flag_of(2, 7.0, uncertain_um=0.0))   # an ensemble's
  assert by_position == single
  assert _flag_of(1) is None and predict.extra_columns(out, None) == {}
  assert _flag_of(1, 7.0).legend[-1] == "its position sd > 7 um"


def test_thickness_csv_marks_supported_columns(trained_workdir, tmp_path, capsys):
  """Also a single model's `uncertain` flag by its position sd
  (predict.uncertain_position_sd_um): the CSV, summary.csv, manifest.json and console agree
  with flag_columns on the prediction file's boundary_position_sd_um."""
  import json
  from octseg_jax.learning.uncertainty import flag_columns
  from octseg_jax.modes import predict
  from octseg_jax.outputs.atomic import write_npz
  s = synthetic.generate(2, 96, 64, seed=11)
  write_npz(str(tmp_path / "scans.npz"), images=s.images)
  predict.run(trained_workdir[0], str(tmp_path / "scans.npz"), str(tmp_path / "out"),
              figures="none", overrides={"predict.uncertain_position_sd_um": 7.744})
  with np.load(tmp_path / "out" / "scans.npz") as d:
    want = geom.column_is_ordered(d["pred"]) & np.isfinite(d["boundaries"]).all(axis=1)
    flagged = np.array([flag_columns(sd, 7.744) for sd in d["boundary_position_sd_um"]]) & want
  rows = list(csv.reader(open(tmp_path / "out" / "scans_thickness.csv")))
  col = rows[0].index("supported")
  got = np.array([r[col] == "1" for r in rows[1:]]).reshape(2, 64)
  np.testing.assert_array_equal(got, want)
  for r, ok in zip(rows[1:], got.ravel()):
    assert all((cell != "") == ok for cell in r[2:col])
  assert b"\r" not in (tmp_path / "out" / "scans_thickness.csv").read_bytes()   # Unix ends
  flags = np.array([r[rows[0].index("uncertain")] == "1" for r in rows[1:]]).reshape(2, 64)
  np.testing.assert_array_equal(flags, flagged)
  assert 0 < flagged.sum() < want.sum()      # some columns (the tiny model: sd 7.73-7.76 um)
  summary = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
  assert [int(r["uncertain_columns"]) for r in summary] == flagged.sum(axis=1).tolist()
  manifest = json.load(open(tmp_path / "out" / "manifest.json"))
  assert manifest["uncertain_position_sd_um"] == 7.744 and "uncertain_um" not in manifest
  assert manifest["uncertain_by"] == "boundary_position_sd_um"
  assert manifest["member_workdirs"] == [trained_workdir[0]]       # which model predicted
  assert manifest["scans_with_uncertain_columns"] == int(flagged.any(axis=1).sum())
  assert ("columns where some boundary's position sd (how widely the model's probabilities "
          "spread it) exceeds 7.744 um") in capsys.readouterr().out


def test_predict_warns_about_scans_the_model_trained_on(trained_workdir, tmp_path, capsys):
  """A training scan's name in another case is a training scan, in the console, summary.csv,
  manifest.json and explain's cam_stats; a new eye is not."""
  import json
  from PIL import Image
  from octseg_jax.modes import predict
  split = json.load(open(os.path.join(trained_workdir[0], "split.json")))
  seen = split["train"]["names"][0].upper()     # a training scan's name, in another case
  folder = tmp_path / "in"
  folder.mkdir()
  image = synthetic.generate(1, 96, 64, seed=3).images[0]
  for stem in (seen, "new_eye"):
    Image.fromarray(image).save(folder / f"{stem}.png")
  predict.run(trained_workdir[0], str(folder), str(tmp_path / "out"), figures="none")
  out = capsys.readouterr().out
  assert f"warning: 1 of 1 scan of {folder / seen}.png was in the model's training set" in out
  assert out.count("in the model's training set") == 1               # not for new_eye.png
  manifest = json.load(open(tmp_path / "out" / "manifest.json"))
  assert (manifest["scans_in_training"], manifest["scans_from_training_volumes"]) == (1, 1)
  with open(tmp_path / "out" / "summary.csv") as f:
    flags = {row["scan"]: (row["in_training"], row["training_volume"])
             for row in csv.DictReader(f)}
  assert flags == {seen: ("1", "1"), "new_eye": ("0", "0")}     # a training scan: its volume too
  from octseg_jax.modes import explain
  explain.run(trained_workdir[0], str(folder), str(tmp_path / "cams"))
  out = capsys.readouterr().out
  assert ("warning: 1 of 2 scans explained was in the model's training set (matched by scan "
          "name or pixels): maps of scans it learned") in out
  for record in ("manifest.json", "cam_stats.json"):
    saved = json.load(open(tmp_path / "cams" / record))
    assert (saved["scans_in_training"], saved["scans_from_training_volumes"]) == (1, 1)
  assert "**Warning: 1 of 2 scans was in the model's training set" in (
      tmp_path / "cams" / "cam_stats.md").read_text()
  assert {p["name"]: (p["in_training"], p["training_volume"]) for p in saved["per_scan"]} == {
      seen: (True, True), "new_eye": (False, False)}


def test_predict_flags_other_bscans_of_a_volume_the_model_trained_on(trained_workdir, tmp_path,
                                                                      capsys, monkeypatch):
  """A file whose B-scans are named STEM_bII (bscan_index) where training had STEM_b03: b03 is
  a training scan, b04 is from its volume; summary.csv, manifest.json and the warning say so."""
  import json
  import shutil
  from octseg_jax.modes import predict
  from octseg_jax.outputs.atomic import write_npz
  workdir = str(tmp_path / "workdir")
  shutil.copytree(trained_workdir[0], workdir)
  with open(f"{workdir}/split.json") as f:
    split = json.load(f)
  phantom = synthetic.generate(3, 96, 64, seed=5)
  scans, masks = phantom.images, phantom.masks.copy()
  masks[1] = 255                                     # an unannotated B-scan between two
  fluid = np.zeros_like(masks)
  fluid[0, 40:50, 10:20] = 1                         # the grader's fluid on the first
  split["train"]["names"].append("eye7_b03")
  with open(f"{workdir}/split.json", "w") as f:
    json.dump(split, f)
  folder = tmp_path / "in"                          # one folder run: one model load
  folder.mkdir()
  write_npz(str(folder / "Eye7.npz"), images=scans, masks=masks, fluid=fluid,
            bscan_index=np.array([3, 4, 9]))
  write_npz(str(folder / "other.npz"), images=scans[1:2], bscan_index=np.array([3]))
  drawn = []                                        # what the overlays get, not drawn here
  monkeypatch.setattr(predict.plots, "boundary_overlay", lambda path, image, bounds, truth, **k:
                      drawn.append((k["title"], truth is None, k["true_fluid"])))
  monkeypatch.setattr(predict.plots, "thickness_profile", lambda *a, **k: None)
  predict.run(workdir, str(folder), str(tmp_path / "out"), figures="all")
  assert [t.split(" (")[0] for t, _, _ in drawn] == [
      "Eye7_b03; a TRAINING SCAN of this model", "Eye7_b04; from a volume this model trained on",
      "Eye7_b09; from a volume this model trained on", "other_b03"]
  # truth (boundaries and the grader's fluid) on the annotated B-scans only
  assert [(no_truth, f if f is None else int(f.sum())) for _, no_truth, f in drawn] == [
      (False, 100), (True, None), (False, 0), (True, None)]
  out = capsys.readouterr().out
  assert (f"warning: 1 of 3 scans of {folder / 'Eye7.npz'} was in the model's training set "
          "(matched by scan name or pixels); 3 of 3 are from volumes it trained on") in out
  assert out.count("warning:") == 1                                   # none for other.npz
  with open(tmp_path / "out" / "summary.csv") as f:
    rows = [(r["scan"], r["in_training"], r["training_volume"]) for r in csv.DictReader(f)]
  assert rows == [("Eye7_b03", "1", "1"), ("Eye7_b04", "0", "1"), ("Eye7_b09", "0", "1"),
                  ("other_b03", "0", "0")]
  manifest = json.load(open(tmp_path / "out" / "manifest.json"))
  assert (manifest["scans_in_training"], manifest["scans_from_training_volumes"]) == (1, 3)


def test_a_folder_run_writes_one_summary_row_per_scan(trained_workdir, tmp_path):
  from octseg_jax.modes import predict
  from octseg_jax.outputs.atomic import write_npz
  folder = tmp_path / "in"
  folder.mkdir()
  counts = {"a": 2, "b": 1, "c": 3}
  for stem, n in counts.items():
    write_npz(str(folder / f"{stem}.npz"), images=synthetic.generate(n, 96, 64, seed=n).images)
  predict.run(trained_workdir[0], str(folder), str(tmp_path / "out"), figures="none")
  rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
  assert [(os.path.basename(r["file"]), int(r["scan_index"])) for r in rows] == [
      (f"{s}.npz", i) for s, n in counts.items() for i in range(n)]
  with np.load(tmp_path / "out" / "c.npz") as d:
    t, names = d["thickness_um"][2], d["names"]
    ok = geom.column_is_ordered(d["pred"][2]) & np.isfinite(d["boundaries"][2]).all(axis=0)
  last = rows[-1]
  assert last["scan"] == names[2] and float(last["row_um"]) == 3.87 and last["col_um"] == ""
  assert float(last["supported_share"]) == pytest.approx(ok.mean(), abs=5e-4)
  assert last["low_support"] == str(int(ok.mean() < geom.LOW_SUPPORT))
  assert last["in_training"] == "0"
  if ok.mean() >= geom.LOW_SUPPORT:  # the total: the layers' sum over supported columns
    assert float(last["total_um"]) == pytest.approx(t[:, ok].sum(axis=0).mean(), abs=5e-3)
  else:                                 # too little supported: no values, as in ETDRS sectors
    assert last["total_um"] == ""
  import json
  assert "summary.csv" in json.load(open(tmp_path / "out" / "manifest.json"))["outputs"]


def test_summary_rows_average_the_supported_columns():
  from types import SimpleNamespace
  from octseg_jax.modes import predict
  t = np.zeros((1, 7, 4))
  t[0, 0] = [10.0, 20.0, 99.0, 30.0]                                  # column 2 unsupported
  t[0, 4] = [1.0, 2.0, 99.0, 3.0]
  fluid_um = np.array([[100.0, 0.0, np.nan, 6.0]])
  out = {"supported": np.array([[True, True, False, True]]), "thickness_um": t,
         "fluid_um": fluid_um}
  scans = SimpleNamespace(names=["s0"], images=np.zeros((1, 8, 4), np.uint8))
  seen, volume_only = ([True], [True]), ([False], [True])     # TrainingScans.flags
  extra = {"uncertain": [["0", "1", "", "0"]]}
  scale = {"row_um": 3.87, "col_um": 11.3, "source": "--pixel_um"}
  (row,) = predict.summary_rows("f.npz", scans, out, scale, extra, seen)
  assert row[:10] == ["f.npz", 0, "s0", "3.87", "11.3", "--pixel_um", "0.750", 0, 1, 1]
  assert row[10] == "20.00" and row[14] == "2.00" and row[17] == "22.00"  # NFL, ONL, total
  assert row[18:] == ["0.00120", 1]                     # 106 um x 0.0113 mm; 1 uncertain
  out["supported"] = np.array([[True, False, False, False]])            # 25% < LOW_SUPPORT
  (row,) = predict.summary_rows("f.npz", scans, out, scale, extra, volume_only)
  assert row[6:10] == ["0.250", 1, 0, 1] and row[10:18] == [""] * 8     # no means, flagged
  out["supported"] = np.zeros((1, 4), bool)
  (row,) = predict.summary_rows("f.npz", scans, out, scale, {"uncertain": [[""] * 4]},
                                volume_only)
  assert row[-1] == ""                              # no supported column: no count, not 0


def test_pixel_um_changes_thickness_by_its_factor_and_nothing_else(trained_workdir, tmp_path):
  import json
  import main
  from octseg_jax.outputs.atomic import write_npz
  write_npz(str(tmp_path / "s.npz"), images=synthetic.generate(2, 96, 64, seed=5).images)
  base = ["main.py", "--mode=predict", f"--workdir={trained_workdir[0]}",
          f"--input={tmp_path / 's.npz'}", "--figures=none"]
  assert main.run_command(base + [f"--output={tmp_path / 'a'}"]) == 0
  assert main.run_command(base + [f"--output={tmp_path / 'b'}", "--pixel_um=7.74,11.5"]) == 0
  with np.load(tmp_path / "a" / "s.npz") as a, np.load(tmp_path / "b" / "s.npz") as b:
    for key in ("pred", "pred_ordered", "boundaries"):
      np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_allclose(b["thickness_um"], 2 * a["thickness_um"], rtol=1e-12)
  scales = json.load(open(tmp_path / "b" / "manifest.json"))["scales"]
  assert scales == {str(tmp_path / "s.npz"): {"row_um": 7.74, "col_um": 11.5,
                                              "source": "--pixel_um"}}
  row = next(csv.DictReader(open(tmp_path / "b" / "s_thickness.csv")))
  assert (row["row_um"], row["scale_source"]) == ("7.74", "--pixel_um")
  from octseg_jax.data import inputs                # as manifest.json and cam_stats.json say it
  assert inputs.scale_record({"row_um": 3.872, "col_um": 11.818999999999999, "source": "file"}
                             ) == {"row_um": 3.872, "col_um": 11.819, "source": "file"}


def test_a_pixel_um_that_disagrees_with_the_file_is_refused(trained_workdir, tmp_path, capsys):
  import main
  from octseg_jax.outputs.atomic import write_npz
  vol, _ = synthetic.generate_volume(3, 96, 64, scale_mm=(0.2, 0.0155, 0.03))
  write_npz(str(tmp_path / "v.npz"), images=vol.images, scale_mm=np.array(vol.scale_mm))
  base = ["main.py", "--mode=predict", f"--workdir={trained_workdir[0]}",
          f"--input={tmp_path / 'v.npz'}", "--figures=none", f"--output={tmp_path / 'o'}"]
  assert main.run_command(base + ["--pixel_um=5"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"error: --pixel_um=5: {tmp_path / 'v.npz'} has its own scale (15.5 um per "
                 "row, 30 um per column) and they disagree"]
  assert not os.path.exists(tmp_path / "o")                   # refused before any output
  assert main.run_command(base + ["--pixel_um=15.5,30"]) == 0          # the same scale: fine
  assert main.run_command(base + ["--pixel_um=abc"]) == 2
  capsys.readouterr()
  explain = base[:1] + ["--mode=explain"] + base[2:4] + [f"--output={tmp_path / 'e'}"]
  assert main.run_command(explain + ["--pixel_um=5"]) == 2     # explain finds scales as predict
  assert capsys.readouterr().err.strip().splitlines() == err
  assert not os.path.exists(tmp_path / "e")
  folder = tmp_path / "folder"                  # in a folder run: listed, the others explained
  folder.mkdir()
  os.rename(tmp_path / "v.npz", folder / "v.npz")
  write_npz(str(folder / "s.npz"), images=vol.images[:1])
  assert main.run_command(explain[:3] + [f"--input={folder}", f"--output={tmp_path / 'f'}",
                                         "--pixel_um=5", "--config.explain.max_scans=1"]) == 2
  assert [r["file"] for r in csv.DictReader(open(tmp_path / "f" / "errors.csv"))] == [
      str(folder / "v.npz")]
  assert sorted(os.listdir(tmp_path / "f"))[-2:] == ["s_000_cam.npz", "s_000_cam.png"]


def test_the_scale_of_a_file_read_as_bscans_is_the_one_predict_reads(tmp_path):
  from octseg_jax.data import inputs
  from octseg_jax.data.scans import ScanSet
  from octseg_jax.outputs.atomic import write_npz
  scans = ScanSet(np.zeros((1, 8, 8), np.uint8), None, np.zeros(1, int), ["a"], "a.mat")
  own = volumes.file_scale("a.mat")                      # Duke DME's defaults, nothing read
  assert own == (volumes.DUKE_DME_SCALE_MM, volumes.DEFAULT_SCALE_SOURCE)
  assert inputs.resolve_scale(scans, None, 3.0, own) == {
      "row_um": 3.87, "col_um": 11.33, "source": "default (Duke DME)"}
  assert inputs.resolve_scale(scans, (5.0, None), 3.0, own) == {   # the column keeps its default
      "row_um": 5.0, "col_um": 11.33, "source": "--pixel_um"}
  assert inputs.resolve_scale(scans, (5.0, None), 3.0) == {"row_um": 5.0, "col_um": None,
                                                           "source": "--pixel_um"}
  write_npz(str(tmp_path / "plain.npz"), images=np.zeros((1, 8, 8), np.uint8))
  write_npz(str(tmp_path / "vol.npz"), images=np.zeros((1, 8, 8), np.uint8),
            scale_mm=np.array([0.2, 0.004, 0.01]))
  assert volumes.file_scale(str(tmp_path / "plain.npz")) is None     # B-scans for predict too
  own = volumes.file_scale(str(tmp_path / "vol.npz"))
  assert own == ((0.2, 0.004, 0.01), "file")
  assert inputs.resolve_scale(scans, (4.0, 10.0), 3.0, own) == {"row_um": 4.0, "col_um": 10.0,
                                                                "source": "file"}
  with pytest.raises(InputError, match="has its own scale"):
    inputs.resolve_scale(scans, (5.0, None), 3.0, own)
  said = [inputs.scale_text(inputs.resolve_scale(scans, opt, 3.0, o)) for opt, o in (
      (None, own), ((5.0, None), None), (None, volumes.file_scale("a.mat")))]
  assert said == ["4 um per row, 10 um per column, from the file", "5 um per row, from --pixel_um",
                  "3.87 um per row, 11.33 um per column, assumed: default (Duke DME)"]


def test_scale_bars_are_round_lengths_drawn_to_scale():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from octseg_jax.outputs import plots
  assert [plots.nice_length(v) for v in (7, 10, 0.3, 1999, 250, 666.7)] == [
      5, 10, 0.2, 1000, 200, 500]
  assert [plots.length_text(v) for v in (500, 1000, 2000)] == ["500 um", "1 mm", "2 mm"]
  for col_um, bars in ((10.0, {"200 um": (0, 50), "500 um": (50, 0)}),
                       (None, {"200 um": (0, 50)})):
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((100, 200)))
    plots.draw_scale_bars(ax, (100, 200), (4.0, col_um))    # 100 rows x 4 um, 200 columns x 10
    drawn = [(abs(np.ptp(l.get_xdata())), abs(np.ptp(l.get_ydata()))) for l in ax.lines]
    assert sorted(drawn) == sorted(bars.values())            # (columns, rows) spanned
    assert sorted(t.get_text() for t in ax.texts) == sorted(bars)
    plt.close(fig)


def test_an_npz_of_volume_bscans_gets_a_volume_hint(tmp_path):
  from octseg_jax.outputs.atomic import write_npz
  images = synthetic.generate(2, 96, 64, seed=1).images
  write_npz(str(tmp_path / "subject.npz"), images=images, bscan_index=np.array([10, 15]))
  write_npz(str(tmp_path / "plain.npz"), images=images)
  hint = volumes.volume_hint(str(tmp_path / "subject.npz"))
  assert hint.startswith(f"note: {tmp_path / 'subject.npz'} holds bscan_index") and \
      "--volume" in hint
  assert volumes.volume_hint(str(tmp_path / "plain.npz")) is None
  assert volumes.volume_hint(str(tmp_path / "missing.npz")) is None


def test_overlay_shades_exactly_the_uncertain_supported_columns(tmp_path, monkeypatch):
  """The overlay's drawn pixels, sampled in each column at a row with no boundary line: a grey
  scan stays grey (R = G = B) except in the uncertain columns, which the faint orange shading
  tints (R > B); an uncertain column without support gets the grey no-support shading only.
  Along the top edge the uncertain supported columns are marked in full orange. The legend
  names the spread that flags a column and the marks."""
  from octseg_jax.outputs import atomic, plots
  figures = []
  monkeypatch.setattr(atomic, "save_figure", lambda path, fig: figures.append(fig))
  h, w = 100, 64
  bounds = np.tile(np.arange(40, 48, dtype=np.float64)[:, None], (1, w))
  uncertain = np.zeros(w, bool)
  uncertain[10:20] = uncertain[40:45] = True
  unsupported = np.zeros(w, bool)
  unsupported[42:50] = True
  plots.boundary_overlay(str(tmp_path / "o.png"), np.full((h, w), 128, np.uint8), bounds,
                         unsupported=unsupported, uncertain=uncertain,
                         uncertain_rule=("ensemble", "members disagree",
                                         "their sd of a boundary > 7.74 um"))
  fig = figures[0]
  ax = fig.axes[0]
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert ("uncertain: ensemble\nmembers disagree\n(their sd of a boundary > 7.74 um)\n"
          "(orange marks at the top\nand bottom edges over\na faint orange shade)") in labels
  fig.canvas.draw()
  pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
  x, y = ax.transData.transform(np.stack([np.arange(w), np.full(w, 70.0)], axis=1)).T
  edges = [ax.transAxes.transform((0.0, f))[1] for f in (0.99, 0.01)]   # top, bottom strips
  plots._plt().close(fig)
  for edge in edges:
    marks = pixels[int(round(pixels.shape[0] - edge)), np.round(x).astype(int)]
    orange = np.all(np.abs(marks - [255, 69, 0]) <= 2, axis=1)   # UNCERTAIN_COLOUR, opaque
    np.testing.assert_array_equal(orange, uncertain & ~unsupported)
  sampled = pixels[np.round(pixels.shape[0] - y).astype(int), np.round(x).astype(int)]
  tinted = sampled[:, 0] - sampled[:, 2] > 20
  np.testing.assert_array_equal(tinted, uncertain & ~unsupported)
  plain = ~tinted
  np.testing.assert_array_equal(sampled[plain, 0], sampled[plain, 2])
  assert (sampled[unsupported, 0] != sampled[~uncertain & ~unsupported][0, 0]).all()


def _drawn_row_over_column(fig, ax) -> float:
  """Displayed height of one row over displayed width of one column, as finally laid out."""
  fig.canvas.draw()
  (x0, y0), (x1, y1) = ax.transData.transform([(0.0, 0.0), (1.0, 1.0)])
  return abs(y1 - y0) / abs(x1 - x0)


@pytest.mark.parametrize("shape", [(40, 50), (224, 544)])
def test_overlay_states_the_stretch_it_draws(tmp_path, monkeypatch, shape):
  """The x label's "drawn Nx taller than true proportions" is the drawn row height over the
  drawn column width of the saved layout, over the physical row / column size (to its one
  decimal), also on a small scan whose label takes much of the figure."""
  import re
  from octseg_jax.outputs import atomic, plots
  figures = []
  monkeypatch.setattr(atomic, "save_figure", lambda path, fig: figures.append(fig))
  h, w = shape
  bounds = np.tile(np.linspace(5, h - 5, 8)[:, None], (1, w))
  plots.boundary_overlay(str(tmp_path / "o.png"), np.full((h, w), 128, np.uint8), bounds,
                         bounds, title="scan", model="m", pixel_um=(3.872, 11.819))
  fig = figures[0]
  ax = fig.axes[0]
  stated = float(re.search(r"drawn ([0-9.]+)x taller", ax.get_xlabel()).group(1))
  drawn = _drawn_row_over_column(fig, ax) / (3.872 / 11.819)
  plots._plt().close(fig)
  assert abs(stated - drawn) <= 0.05 + 1e-9, (stated, drawn)


def test_label_figure_states_the_pixel_shape_it_draws():
  """side_by_side's title says how tall a drawn pixel is against its width, as finally laid
  out with the title in place (two decimals)."""
  import re
  from octseg_jax.outputs import plots
  labels = np.zeros((60, 80), np.uint8)
  labels[20:40] = 3
  fig = plots._label_figure([np.full((60, 80), 100, np.uint8)], [labels], [labels],
                            ["scan"], "a title")
  drawn = _drawn_row_over_column(fig, fig.axes[0])
  found = re.search(r"each pixel drawn ([0-9.]+)x as tall as wide", fig.get_suptitle())
  plots._plt().close(fig)
  assert found and abs(float(found.group(1)) - drawn) <= 0.005 + 1e-9, (found, drawn)


def test_an_overlay_without_no_support_columns_has_no_blank_margin(tmp_path):
  """The saved overlay (tight box) ends at its axis labels whether or not any column lacks
  support: no invisible mark stretches it to the figure's corner."""
  from PIL import Image
  from octseg_jax.outputs import plots
  h, w = 120, 300
  bounds = np.tile(np.arange(30, 70, 5, dtype=np.float64)[:, None], (1, w))
  margins = []
  for name, unsupported in (("none", np.zeros(w, bool)), ("some", np.arange(w) < 5)):
    plots.boundary_overlay(str(tmp_path / f"{name}.png"), np.full((h, w), 128, np.uint8), bounds,
                           unsupported=unsupported)
    ink = np.asarray(Image.open(tmp_path / f"{name}.png").convert("L")) < 250
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    margins.append((ink.shape[0] - 1 - rows[-1], cols[0]))          # blank rows below, left
  assert max(max(m) for m in margins) < 20, margins


def test_overlay_outlines_the_graders_fluid_dashed_over_the_prediction(tmp_path, monkeypatch):
  """The predicted fluid (rows 10-19, columns 5-14) is one solid outline; the grader's (rows
  30-39, columns 20-29) a black solid one under a dashed one in the fluid colour, each around
  its own square (contour at 0.5: half a pixel outside the marked pixels). The legend and the
  title say so; a grader who marked no fluid is named as such."""
  from octseg_jax.outputs import atomic, plots
  figures = []
  monkeypatch.setattr(atomic, "save_figure", lambda path, fig: figures.append(fig))
  h, w = 60, 40
  pred, truth = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
  pred[10:20, 5:15] = truth[30:40, 20:30] = 1
  bounds = np.tile(np.arange(2, 58, 7, dtype=np.float64)[:, None], (1, w))
  for grader in (truth, np.zeros_like(truth)):
    plots.boundary_overlay(str(tmp_path / "o.png"), np.zeros((h, w), np.uint8), bounds, bounds,
                           fluid=pred, true_fluid=grader)
  outlines = [(c.get_edgecolor()[0].round(3).tolist(), c.get_linestyle()[0][1] is not None,
               np.concatenate([p.vertices for p in c.get_paths()]))
              for c in figures[0].axes[0].collections if hasattr(c, "levels")]
  fluid_rgb = [round(v, 3) for v in plots._plt().matplotlib.colors.to_rgba(plots.FLUID_COLOUR)]
  assert [(colour, dashed) for colour, dashed, _ in outlines] == [
      (fluid_rgb, False), ([0.0, 0.0, 0.0, 1.0], False), (fluid_rgb, True)]
  for (_, _, xy), (r0, c0) in zip(outlines, [(10, 5), (30, 20), (30, 20)]):
    np.testing.assert_allclose([xy[:, 1].min(), xy[:, 1].max(), xy[:, 0].min(),
                                xy[:, 0].max()], [r0 - 0.5, r0 + 9.5, c0 - 0.5, c0 + 9.5])
  legends = [[t.get_text() for t in fig.axes[0].get_legend().get_texts()][-2:]
             for fig in figures]
  assert legends == [["fluid (predicted)", "fluid (grader)"],
                     ["fluid (predicted)", "fluid (grader):\nnone marked"]]
  title = figures[1].axes[0].get_title()
  assert "boundaries and fluid: solid = prediction, dashed = truth" in title
  for fig in figures:
    plots._plt().close(fig)


def test_overlay_marks_every_no_support_run_and_leaves_a_one_column_run_undrawn(tmp_path,
                                                                               monkeypatch):
  """Each run of no-support columns gets one mark at the top edge (at the run's centre; whole at
  the first column), and a run of a single column of a scan's width interrupts the boundary
  lines there in the drawn pixels (checked for the 7 coloured lines: the white ILM line is not
  told apart from the band's light hatching by colour)."""
  import matplotlib.colors
  from octseg_jax.outputs import atomic, plots
  figures = []
  monkeypatch.setattr(atomic, "save_figure", lambda path, fig: figures.append(fig))
  h, w = 100, 768                                    # a scan's width: columns narrower than a line
  bounds = np.tile(np.arange(30, 70, 5, dtype=np.float64)[:, None], (1, w))
  unsupported = np.zeros(w, bool)
  unsupported[0] = unsupported[100] = unsupported[200:202] = unsupported[250:260] = True
  plots.boundary_overlay(str(tmp_path / "o.png"), np.zeros((h, w), np.uint8), bounds,
                         unsupported=unsupported)
  fig = figures[0]
  ax = fig.axes[0]
  (marks,) = [line for line in ax.get_lines() if line.get_marker() == "v"]
  np.testing.assert_array_equal(marks.get_xdata(), [0.0, 100.0, 200.5, 254.5])
  assert not marks.get_clip_on()                 # the mark at column 0 is whole, not cut in half
  fig.canvas.draw()
  pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
  plots._plt().close(fig)
  for b in range(1, 8):
    (x, y), (x_near, _) = ax.transData.transform([(100, bounds[b, 0] - 0.5),
                                                  (90, bounds[b, 0] - 0.5)])
    row = int(round(pixels.shape[0] - y))
    colour = np.array(matplotlib.colors.to_rgb(plots.BOUNDARY_COLOURS[b])) * 255
    def drawn(col):
      return np.abs(pixels[row - 1:row + 2, int(round(col))] - colour).max(axis=-1).min() <= 40
    assert drawn(x_near) and not drawn(x), b


def test_cam_figure_says_per_class_whether_it_passed_on_held_out_eyes():
  """With held-out verdicts each class tile says whether its map beat random removal there on
  the fold-averaged areas and in how many folds, a failure in red; a class without a verdict
  (None) and a layer without verdicts keep the plain titles, and the layer says on its input
  tile that its maps have no verdict."""
  from octseg_jax.outputs import plots
  maps = np.random.default_rng(0).uniform(size=(3, 20, 30))
  fig = plots._cam_figure(np.zeros((20, 30)), {"dec3_conv1": maps, "enc0_conv1": maps}, "t",
                          checks={"dec3_conv1": [None, (False, 1, 4), (True, 1, 4)]})
  titles = [(ax.get_title(), ax.title.get_color()) for ax in fig.axes if ax.get_visible()
            and ax.get_title().startswith("where")]
  inputs = [ax.get_title() for ax in fig.axes if ax.get_title().startswith("input")]
  plots._plt().close(fig)
  # The layer without verdicts says so on its input tile; the one with them does not.
  assert ["no held-out verdict" in t for t in inputs] == [False, True]
  assert titles == [
      ("where the model looked to label the background", "black"),
      ("where the model looked to label the NFL\non held-out eyes: NOT better than random\n"
       "(mean of 4 folds; better in 1 of 4)", "firebrick"),
      ("where the model looked to label the GCL+IPL\non held-out eyes: mixed, beats random "
       "removal on the\nmean of 4 folds, in only 1 of 4 alone", "black"),
      ("where the model looked to label the background", "black"),
      ("where the model looked to label the NFL", "black"),
      ("where the model looked to label the GCL+IPL", "black")]


def test_cam_figure_draws_the_box_on_every_tile():
  from matplotlib.patches import Rectangle
  from octseg_jax.outputs import plots
  maps = np.random.default_rng(0).uniform(size=(3, 20, 30))
  fig = plots._cam_figure(np.zeros((20, 30)), {"dec3_conv1": maps}, "t", box=(2, 3, 12, 23))
  boxes = [[(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches
            if isinstance(p, Rectangle)] for ax in fig.axes if ax.get_visible() and ax.images]
  plots._plt().close(fig)
  assert boxes == [[(2.5, 1.5, 20, 10)]] * 4                 # the input tile and 3 classes


def test_heldout_passed_reads_the_method_s_layers_from_the_evidence():
  """Per layer the classes' verdicts, none for the background (cam_stats.md judges only the
  layers) and none at all for a target other than 'all', which the evidence did not measure."""
  from octseg_jax.outputs.cam_report import heldout_passed
  evidence = {"models": "m", "methods": {
      "hirescam": {"dec3_conv1": {"passed": [True, False, True], "folds_passed": [4, 1, 3],
                                  "per_fold_faithful": [[]] * 4}},
      "gradcam": {"dec0_conv1": {"passed": [False, True, False]}}}}
  assert heldout_passed(evidence, "hirescam", "all") == {
      "dec3_conv1": [None, (False, 1, 4), (True, 3, 4)]}
  assert heldout_passed(evidence, "hirescam", "predicted") == {}
  assert heldout_passed(evidence, "gradcampp", "all") == {}
  assert heldout_passed(None, "hirescam", "all") == {}


def test_a_cam_tile_calls_a_verdict_mixed_when_most_folds_alone_fail():
  """The fold-averaged ROAD areas decide the verdict; a class that passes on the mean but in at
  most half of the folds alone is called mixed, not 'beats random removal'."""
  from octseg_jax.outputs.plots import _verdict_text
  assert _verdict_text((True, 3, 4)) == ("\non held-out eyes: beats random removal"
                                         "\n(mean of 4 folds; better in 3 of 4)")
  assert _verdict_text((True, 2, 4)) == ("\non held-out eyes: mixed, beats random removal on "
                                         "the\nmean of 4 folds, in only 2 of 4 alone")
  assert _verdict_text((False, 1, 4)) == ("\non held-out eyes: NOT better than random"
                                          "\n(mean of 4 folds; better in 1 of 4)")
  assert _verdict_text(None) == ""


def test_cam_stats_md_gives_the_figures_held_out_verdict():
  """cam_stats.md's held-out column says what the figure's tile says: yes, mixed (the mean of
  the folds only) or no, with the folds that passed alone."""
  from octseg_jax.outputs.cam_report import heldout_markdown, heldout_verdict
  assert [heldout_verdict(*v) for v in ((True, 3, 4), (True, 2, 4), (False, 4, 4))] == [
      "yes", "mixed", "no"]
  found = {"passed": [True] * 4 + [False] * 4, "folds_passed": [4, 4, 1, 3, 0, 4, 4, 4],
           "morf": [0.5] * 8, "random": [0.6] * 8, "per_fold_faithful": [6] * 4,
           "similarity": 0.03}
  evidence = {"models": "m", "methods": {"hirescam": {"dec3_conv1": found}}}
  md = heldout_markdown(evidence, "hirescam", "dec3_conv1", "all")
  verdicts = [line.split(" | ")[4] for line in md.splitlines() if line.startswith("| ")][1:]
  assert verdicts == ["yes", "mixed (the mean only)", "yes", "**no**", "**no**", "**no**",
                      "**no**"]
  # Maps of another target get no verdict, as in the figures (heldout_passed), and say why.
  assert heldout_markdown(evidence, "hirescam", "dec3_conv1", "predicted") == (
      "Held-out evidence: measured with target 'all' only (m); these maps, of target "
      "'predicted', have no held-out verdict.")


def test_the_maps_title_gives_the_gaps_of_a_selection_of_bscans():
  """A Duke subject file holds 11 of a volume's 61 B-scans: the title gives their gaps, not the
  volume's spacing; evenly spaced B-scans get the spacing alone, also where a scanner file's
  positions, given to the um, make gaps of 31 and 32 um in a volume of 31.44 um spacing."""
  spaced = SimpleNamespace(scale_mm=(0.123, 0.00387, 0.01133),
                           positions_mm=np.array([10, 15, 20, 25, 28, 30]) * 0.123)
  assert volume_report.bscan_spacing_text(spaced) == (
      "B-scans 246-615 um apart (a selection of a volume's, 123 um between B-scans)")
  even = SimpleNamespace(scale_mm=(0.123, 0.00387, 0.01133), positions_mm=np.arange(5) * 0.123)
  assert volume_report.bscan_spacing_text(even) == "123 um between B-scans"
  rounded = SimpleNamespace(scale_mm=(0.03144, 0.00387, 0.0118),
                            positions_mm=np.round(np.arange(10) * 0.03144, 3))
  assert volume_report.bscan_spacing_text(rounded) == "31.44 um between B-scans"


@pytest.mark.parametrize("col_um, label", [
    (None, "column (A-scan, pixels)"),
    (11.33, "column (A-scan, pixels); 11.33 um each, 0.45 mm across")])   # 40 x 11.33 um
def test_the_thickness_plot_gives_the_column_size_when_known(monkeypatch, col_um, label):
  from octseg_jax.outputs import atomic, plots
  figures = []
  monkeypatch.setattr(atomic, "save_figure", lambda path, fig: figures.append(fig))
  plots.thickness_profile("unused.png", np.full((7, 40), 30.0), col_um=col_um)
  assert figures[0].axes[6].get_xlabel() == label
