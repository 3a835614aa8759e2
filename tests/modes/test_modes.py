"""eval, predict, explain and benchmark on the shared tiny trained workdir."""

import csv
import json
import os
import types

import numpy as np
import pytest

from octseg_jax.geometry import boundaries as geom
from octseg_jax.modes import evaluate
from octseg_jax.modes import explain
from octseg_jax.modes import predict
from octseg_jax.data import synthetic
from octseg_jax.outputs.atomic import write_npz, write_png
from conftest import tiny_config


def test_eval_writes_both_protocols_at_native_resolution(trained_workdir, tmp_path, capsys):
  workdir, _ = trained_workdir
  result = evaluate.run(workdir, None, str(tmp_path))
  with open(tmp_path / "metrics.json") as f:
    saved = json.load(f)
  # The validation split is subject 3 of the tiny phantom: scans 8..11, 96 x 64 each.
  s = synthetic.generate(12, 96, 64, seed=0, scans_per_subject=4)
  assert saved["scans"] == 4 and saved["raw"]["pixels"] == 4 * 96 * 64
  assert result["raw"]["pixels"] == int((s.masks[8:] != 255).sum())
  for protocol in ("paper", "literature"):
    assert protocol in saved["raw"]
  assert 0 <= saved["raw"]["paper"]["accuracy"] <= 1
  assert len(saved["raw"]["geometry"]["mae_um"]) == 8
  md = (tmp_path / "metrics.md").read_text()
  assert "| 1 | NFL |" in md and "mean layer Dice" in md
  split = saved["topology"]["by_fluid_columns"]            # the phantom marks fluid
  assert split["without_fluid"]["columns"] + split["with_fluid"]["columns"] == 4 * 64
  assert split["without_fluid"]["pixels"] + split["with_fluid"]["pixels"] == \
      saved["topology"]["pixels"]
  assert "## Columns with and without fluid" in md
  from PIL import Image
  assert [evaluate.panel_scans(n) for n in (1, 2, 4, 11)] == [[0], [0, 1], [0, 2, 3], [0, 5, 10]]
  panel = Image.open(tmp_path / "side_by_side.png")   # the Figure-4 panel of 3 scans
  assert panel.size[1] > panel.size[0] / 2
  record = json.loads((tmp_path / "eval_provenance.json").read_text())
  assert record["mode"] == "eval" and record["data"] == saved["data"]
  assert 0 < record["wall_time_s"] < 600
  assert saved["scans_in_training"] == 0 and "Warning" not in md       # the validation split
  manifest = json.loads((tmp_path / "manifest.json").read_text())
  assert manifest["scans_in_training"] == manifest["scans_from_training_volumes"] == 0
  fixed, raw = (saved[k]["literature"]["mean_layer_dice"] for k in ("topology", "raw"))
  assert (f"mean layer Dice {fixed:.4f} (order fix, as predict outputs; raw argmax {raw:.4f})"
          in capsys.readouterr().out)
  assert manifest["scale"] == {"row_um": 3.87, "source": "default (data.pixel_um)"}
  assert manifest["scales"] == {}                            # no --input files


def test_eval_console_reports_the_heads():
  from octseg_jax.outputs import report
  heads = {"fluid": {"dice": 0.5, "dice_scans_with_fluid": 0.625, "scans_with_fluid": 1},
           "boundary_head": {"geometry": {"mae_um": [1.0, 2.0, np.nan, 3.0]}}}
  assert report.heads_summary(heads) == [
      "fluid       Dice 0.5000 (pixels of all scans), 0.6250 over the 1 scan with fluid",
      "boundary head: mean boundary MAE 2.00 um (its own rows, ordered by construction)"]
  assert report.heads_summary({}) == []


def test_eval_says_over_how_many_columns_its_boundary_errors_are():
  """The columns both the truth and the prediction have each boundary in, against all scored:
  a range, and a warning naming how many boundaries fall under LOW_SUPPORT of the columns
  (an XML export labelled in 4 of 500 columns printed a mean MAE without either)."""
  from octseg_jax.outputs import report
  fix = {"geometry": {"columns": [500] * 8}, "columns_total": 500}
  assert report.boundary_columns_text(fix) == [
      "boundary errors over 500 of 500 columns (where the truth and the prediction both have "
      "the boundary)"]
  fix = {"geometry": {"columns": [4, 4, 4, 300, 250, 500, 500, 500]}, "columns_total": 500}
  assert report.boundary_columns_text(fix) == [
      "boundary errors over 4-500 of 500 columns (where the truth and the prediction both have "
      "the boundary); warning: under 50% of the columns for 3 of 8 boundaries"]
  assert report.boundary_columns_text({"geometry": {}}) == []


def test_eval_says_how_many_scans_the_model_trained_on():
  import types
  from octseg_jax.outputs import report
  from octseg_jax.serving import inference
  def member(names):                  # a single model is its own one member, as Trained is
    m = types.SimpleNamespace(split={"train": {"names": names}})
    m.members = [m]
    return m
  seen = lambda trained, names: inference.training_overlap(trained, names)["scans_in_training"]
  one = member(["subject_01_b10", "subject_01_b15"])
  scored = ["subject_01_b10", "subject_01_b15", "subject_02_b10"]
  assert seen(one, scored) == 2
  ensemble = types.SimpleNamespace(members=[member(["subject_03_b10"]),
                                            member(["subject_02_b10"])])
  assert seen(ensemble, scored) == 1              # any member's
  # Duke's own .mat files are Subject_SS.mat, the shared .npz files subject_SS.npz: one scan.
  assert seen(one, ["Subject_01_b10", "SUBJECT_01_B15", "Subject_01"]) == 2
  assert report.training_overlap_text({"scans_in_training": 2}, 3) == (
      "2 of 3 scans were in the model's training set (matched by scan name or pixels)")


def test_other_bscans_of_a_training_volume_are_counted_apart():
  """A scan named STEM_bII whose STEM (any case) training names share is from a volume the
  model trained on, though no training scan (the other slices of a Duke .mat); other names are
  not, and a training scan always is; the warning says both counts."""
  import types
  from octseg_jax.data.scans import bscan_name, volume_of
  from octseg_jax.outputs import report
  from octseg_jax.serving import inference
  m = types.SimpleNamespace(split={"train": {"names": ["subject_01_b10", "phantom_1_0003"]}})
  m.members = [m]
  names = ["Subject_01_b10", "Subject_01_b33", "subject_011_b10", "subject_01", "phantom_1_0004",
           "my_scan_b2"]
  assert inference.training_scans(m).flags(names) == (
      [True, False, False, False, False, False], [True, True, False, False, False, False])
  assert inference.training_overlap(m, names) == {"scans_in_training": 1,
                                                 "scans_from_training_volumes": 2}
  assert volume_of(bscan_name("Subject_07", 33)) == "subject_07" and volume_of("a_b") is None
  by_name = "training scans and other B-scans of their eyes, by the volume STEM of STEM_bII"
  assert report.training_overlap_text({"scans_in_training": 11,
                                       "scans_from_training_volumes": 61}, 61, " of S.mat") == (
      "11 of 61 scans of S.mat were in the model's training set (matched by scan name or "
      f"pixels); 61 of 61 are from volumes it trained on ({by_name})")
  assert report.training_overlap_text({"scans_in_training": 0,
                                       "scans_from_training_volumes": 1}, 2) == (
      f"1 of 2 scans is from volumes it trained on ({by_name})")
  assert not report.training_overlap({"scans_in_training": 0})       # records from before
  assert report.training_overlap({"scans_in_training": 1})
  assert [report.training_title(*f) for f in ((True, True), (False, True), (False, False))] == [
      "; a TRAINING SCAN of this model", "; from a volume this model trained on", ""]
  assert report.training_volume_title(0, 0, 5) == ""
  assert report.training_volume_title(2, 5, 5) == (
      "THIS MODEL TRAINED ON THIS VOLUME (training scans: 2 of its 5 B-scans); not a new eye")
  assert report.training_volume_title(0, 1, 1) == (
      "THIS MODEL TRAINED ON THIS VOLUME (training scans: 0 of its 1 B-scan); not a new eye")


def test_a_training_scan_under_another_name_is_found_by_its_pixels():
  """split.json's train.fingerprints: a training scan read under another name (an exported
  PNG, a user's .npz) counts as seen; one changed pixel or a workdir without fingerprints
  (trained before them) falls back to names."""
  import types
  from octseg_jax.data import pipeline
  from octseg_jax.serving import inference
  scan = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
  other = scan.copy()
  other[3, 4] ^= 1
  def member(train):
    m = types.SimpleNamespace(split={"train": train})
    m.members = [m]
    return m
  new = member({"names": ["subject_01_b10"], "fingerprints": [pipeline.pixel_fingerprint(scan)]})
  old = member({"names": ["subject_01_b10"]})
  names = ["my_export", "my_export_edited", "subject_01_b10"]
  count = lambda m: inference.training_overlap(m, names, [scan, other, other])
  assert count(new) == {"scans_in_training": 2, "scans_from_training_volumes": 2}
  assert count(old) == {"scans_in_training": 1, "scans_from_training_volumes": 1}
  assert pipeline.pixel_fingerprint(scan) != pipeline.pixel_fingerprint(scan.astype(np.int16))


def test_a_training_scan_saved_as_png_or_npz_under_another_name_is_flagged(trained_workdir,
                                                                           tmp_path):
  """End to end: training fingerprints its scans as loaded, and predict reads a PNG export and a
  user's .npz of one of them to the same uint8 pixels, so summary.csv flags both; a held-out
  scan is not flagged."""
  from PIL import Image
  from octseg_jax.data import pipeline
  from octseg_jax.serving import inference
  workdir, _ = trained_workdir
  trained = inference.load_trained(workdir)
  images, _, _, names = pipeline.flatten(pipeline.load_scans(trained.config.data))
  by_name = dict(zip(names, images))
  seen = by_name[trained.split["train"]["names"][0]]
  unseen = by_name[trained.split["val"]["names"][0]]
  (tmp_path / "in").mkdir()
  Image.fromarray(seen).save(tmp_path / "in" / "export.png")
  write_npz(str(tmp_path / "in" / "mine.npz"), images=np.stack([seen, unseen]))
  predict.run(workdir, str(tmp_path / "in"), str(tmp_path / "out"), figures="none")
  with open(tmp_path / "out" / "summary.csv") as f:
    flags = [(os.path.basename(r["file"]), r["in_training"]) for r in csv.DictReader(f)]
  assert sorted(flags) == [("export.png", "1"), ("mine.npz", "0"), ("mine.npz", "1")]


def test_predict_at_native_resolution_for_npz_png_and_folder(trained_workdir, tmp_path, capsys,
                                                             monkeypatch):
  workdir, _ = trained_workdir
  s = synthetic.generate(3, 100, 70, seed=9)        # another size than training (96 x 64)
  write_npz(str(tmp_path / "in" / "scans.npz"), images=s.images[:2], masks=s.masks[:2])
  write_png(str(tmp_path / "in" / "one.png"), s.images[2])
  out = tmp_path / "out"
  predict.run(workdir, str(tmp_path / "in"), str(out), figures="all")
  with np.load(out / "scans.npz") as d:
    assert d["pred"].shape == (2, 100, 70) and d["pred"].dtype == np.uint8
    assert d["pred"].max() <= 7
    assert d["boundaries"].shape == (2, 8, 70) and d["thickness_um"].shape == (2, 7, 70)
    from octseg_jax.geometry import boundaries as geom
    assert geom.column_is_ordered(d["pred_ordered"]).all()
  with np.load(out / "one.npz") as d:
    assert d["pred"].shape == (1, 100, 70)
  with open(out / "scans_thickness.csv") as f:
    rows = list(csv.reader(f))
  assert rows[0][:3] == ["scan", "column", "NFL_um"] and len(rows) == 1 + 2 * 70
  for name in ("scans_000_overlay.png", "scans_001_thickness.png", "one_overlay.png"):
    assert (out / name).stat().st_size > 1000
  # Scans with every thickness in fewer than half of their columns: counted and warned about.
  shares = []
  for table in ("scans_thickness.csv", "one_thickness.csv"):
    with open(out / table) as f:
      cells = list(csv.DictReader(f))
    shares += [np.mean([int(r["supported"]) for r in cells if r["scan"] == name])
               for name in {r["scan"] for r in cells}]
  low = sum(share < geom.LOW_SUPPORT for share in shares)
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["scans_with_low_support"] == low
  assert ("warning:" in capsys.readouterr().out) == (low > 0)
  monkeypatch.setattr(geom, "LOW_SUPPORT", 1.01)       # every scan is below it
  predict.run(workdir, str(tmp_path / "in" / "one.png"), str(tmp_path / "low"), figures="none")
  assert json.loads((tmp_path / "low" / "manifest.json").read_text())[
      "scans_with_low_support"] == 1
  assert "warning: 1 of 1 scan of" in capsys.readouterr().out


def test_explain_writes_maps_stats_and_figure(trained_workdir, tmp_path):
  workdir, _ = trained_workdir
  s = synthetic.generate(2, 96, 64, seed=4)
  write_npz(str(tmp_path / "scan.npz"), images=s.images, masks=s.masks)
  result = explain.run(workdir, str(tmp_path / "scan.npz"), str(tmp_path / "out"),
                       layers=["dec0_conv1", "head"], method="hirescam", target="predicted",
                       faithfulness_flag="deletion")
  assert result["settings"]["method"] == "hirescam"
  out = tmp_path / "out"
  with np.load(out / "scan_000_cam.npz") as d:
    assert d["head_raw"].shape == (8,) + d["x"].shape and (d["head_raw"] >= 0).all()
    from octseg_jax.data import pipeline, preprocessing
    from octseg_jax.serving.inference import stored_config
    recipe = pipeline.recipe_from_config(stored_config(workdir))     # no checkpoint to load
    x, _, place = preprocessing.prepare(s.images[0], None, recipe)
    assert [int(d[k]) for k in ("band_top", "band_rows", "scan_rows", "scan_cols", "input_rows",
                                "input_cols")] == [place.top, place.band_rows, 96, 64,
                                                   place.model_rows, place.model_cols]
    np.testing.assert_array_equal(d["x"], x)
  stats = json.loads((out / "cam_stats.json").read_text())
  assert stats["settings"]["region"] == "ground truth" and stats["settings"]["scans"] == 2
  for layer in ("dec0_conv1", "head"):
    m = stats["mean"][layer]
    assert len(m["alpha_mean"]) == 8 and len(m["deletion_area"]) == 8
  assert "| 3 | INL |" in (out / "cam_stats.md").read_text()
  assert (out / "scan_001_cam.png").stat().st_size > 1000
  assert stats["timing_per_scan"]["removal_s"] > 0
  # Each scan's share of the columns predict would measure: predict's own summary.csv on the
  # same scans (its grid is the scan's, explain's the model input's: allow one column).
  predict.run(workdir, str(tmp_path / "scan.npz"), str(tmp_path / "pred"), figures="none")
  with open(tmp_path / "pred" / "summary.csv") as f:
    shares = [float(r["supported_share"]) for r in csv.DictReader(f)]
  for scan, share in zip(stats["per_scan"], shares, strict=True):
    assert abs(scan["supported_share"] - share) <= 1 / 64 + 5e-4          # 64 columns; %.3f
    assert scan["low_support"] == (scan["supported_share"] < geom.LOW_SUPPORT)
  assert stats["scans_with_low_support"] == sum(s["low_support"] for s in stats["per_scan"])


FIRST_5 = types.SimpleNamespace(scan_indices=(), max_scans=5)     # an explain config


def test_explains_closing_lines_warn_about_scans_with_low_support(capsys):
  from types import SimpleNamespace
  run_out = SimpleNamespace(folder="out", num_failed=0)
  scans = [{"low_support": low, "in_training": False, "training_volume": False}
           for low in (True, False, True)]
  cases = ((scans, "2 of 3 scans explained have"), (scans[:1], "1 of 1 scan explained has"))
  for per_scan, line in cases:
    explain.print_explained(per_scan, len(per_scan), FIRST_5, "gradcam", run_out, 0, {})
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (f"warning: {line} the layers in anatomical order (every boundary found) "
                       "in fewer than 50% of the columns of the model's input (the maps explain "
                       "outputs that predict would not measure): is it a retinal B-scan like the "
                       "model's training data?")
  explain.print_explained(scans[1:2], 1, FIRST_5, "gradcam", run_out, 0, {})
  assert "warning" not in capsys.readouterr().out


def test_a_labellings_support_is_its_ordered_columns_with_every_boundary():
  col = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0])             # every layer, in order
  labels = np.stack([col, col[::-1], np.zeros(9, int), np.r_[col[:-2], 0, 0]], axis=1)
  # Reversed: out of order; no layer pixels: no boundary; OS-RPE missing: a boundary of
  # zero thickness is still found (b_7 = b_8), as predict's supported columns count it.
  np.testing.assert_array_equal(geom.labelling_support(labels), [True, False, False, True])


def test_explain_without_curves_times_no_curves_and_says_when_scans_are_left_out(
    trained_workdir, tmp_path, capsys):
  workdir, _ = trained_workdir
  s = synthetic.generate(2, 96, 64, seed=4)
  write_npz(str(tmp_path / "scan.npz"), images=s.images)
  explain.run(workdir, str(tmp_path / "scan.npz"), str(tmp_path / "out"),
              overrides={"explain.max_scans": 1})
  assert "explained 1 scan of 2 (explain.max_scans=1 per file" in capsys.readouterr().out
  stats = json.loads((tmp_path / "out" / "cam_stats.json").read_text())
  assert sorted(stats["timing_per_scan"]) == ["maps_s", "statistics_s"]
  assert stats["settings"]["scales"] == {str(tmp_path / "scan.npz"): {
      "row_um": 3.87, "col_um": None, "source": "default (data.pixel_um)"}}
  assert stats["settings"]["scans"] == 1 and stats["settings"]["scans_read"] == 2
  manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
  assert (manifest["scans"], manifest["scans_read"]) == (1, 2)
  md = (tmp_path / "out" / "cam_stats.md").read_text()
  assert f"1 scan from {tmp_path / 'scan.npz'} (of 2 read: explain.max_scans per file)" in md
  assert "removal curves" not in md
  assert sorted(os.listdir(tmp_path / "out")) == [
      "cam_stats.json", "cam_stats.md", "manifest.json", "scan_000_cam.npz", "scan_000_cam.png"]


def test_explain_explains_the_chosen_scans(trained_workdir, tmp_path, capsys):
  """explain.scan_indices=(2, 0): those two scans of the file (each map file's input is that
  scan as the model sees it), and the closing line and cam_stats.md say how they were chosen."""
  from octseg_jax.serving import inference
  workdir, _ = trained_workdir
  images = synthetic.generate(3, 96, 64, seed=4).images
  write_npz(str(tmp_path / "scans.npz"), images=images)
  result = explain.run(workdir, str(tmp_path / "scans.npz"), str(tmp_path / "out"),
                       overrides={"explain.scan_indices": (2, 0)})
  assert "explained 2 scans of 3 (explain.scan_indices=2,0)" in capsys.readouterr().out
  assert result["settings"]["scan_indices"] == [2, 0]
  assert sorted(os.listdir(tmp_path / "out")) == [
      "cam_stats.json", "cam_stats.md", "manifest.json", "scans_000_cam.npz",
      "scans_000_cam.png", "scans_002_cam.npz", "scans_002_cam.png"]
  md = (tmp_path / "out" / "cam_stats.md").read_text()
  assert "2 scans from" in md and "(of 3 read: explain.scan_indices)" in md
  trained = inference.load_trained(workdir)
  model_inputs = [inference.prepare(trained, image)[0] for image in images]
  assert not np.array_equal(model_inputs[0], model_inputs[2])
  for i in (0, 2):
    x = np.load(tmp_path / "out" / f"scans_00{i}_cam.npz")["x"]
    h, w = model_inputs[i].shape
    np.testing.assert_array_equal(x[:h, :w], model_inputs[i])


def test_a_chosen_scan_a_file_lacks_is_refused_before_anything_is_written(trained_workdir,
                                                                          tmp_path):
  from octseg_jax.errors import InputError
  workdir, _ = trained_workdir
  write_npz(str(tmp_path / "scan.npz"), images=synthetic.generate(2, 96, 64, seed=4).images)
  with pytest.raises(InputError) as e:
    explain.run(workdir, str(tmp_path / "scan.npz"), str(tmp_path / "out"),
                overrides={"explain.scan_indices": (1, 5, 2)})
  assert str(e.value) == (f"--config.explain.scan_indices=1,5,2: {tmp_path / 'scan.npz'} has 2 "
                          "scans (positions 0-1), none at 2, 5")
  assert not (tmp_path / "out").exists()


def test_a_folder_file_without_a_chosen_scan_fails_alone(trained_workdir, tmp_path, capsys):
  """In a folder run, a file without a scan at a chosen position is listed in errors.csv as
  failed and the others are explained; the run then ends with its one line (exit status 2)."""
  from octseg_jax.errors import InputError
  workdir, _ = trained_workdir
  folder = tmp_path / "in"
  folder.mkdir()
  write_npz(str(folder / "a.npz"), images=synthetic.generate(3, 96, 64, seed=4).images)
  write_npz(str(folder / "b.npz"), images=synthetic.generate(1, 96, 64, seed=5).images)
  with pytest.raises(InputError) as e:
    explain.run(workdir, str(folder), str(tmp_path / "out"),
                overrides={"explain.scan_indices": (2, 2)})
  assert str(e.value) == (f"{folder}: 1 of 2 scan files could not be read or used (listed in "
                          f"{tmp_path / 'out'}/errors.csv)")
  why = (f"--config.explain.scan_indices=2,2: {folder / 'b.npz'} has 1 scan (positions 0-0), "
         "none at 2")
  assert f"failed: {why}" in capsys.readouterr().out
  with open(tmp_path / "out" / "errors.csv") as f:
    assert list(csv.reader(f))[1:] == [[str(folder / "b.npz"), "failed", why]]
  assert sorted(n for n in os.listdir(tmp_path / "out") if n.endswith("_cam.npz")) == [
      "a_002_cam.npz"]
  assert json.loads((tmp_path / "out" / "manifest.json").read_text())["complete"]


def test_a_box_beyond_the_models_view_is_said_once_and_drawn_as_used(trained_workdir, tmp_path,
                                                                     capsys, monkeypatch):
  """--cam_box reaching beyond the model's view: one note per run naming the part explained,
  and each figure draws that part (model-input pixels) and names it in scan pixels; a scan with
  low support says so in its figure's title."""
  from octseg_jax.outputs import plots
  drawn = []
  monkeypatch.setattr(plots, "cam_panel", lambda path, *a, **k: drawn.append((k["box"],
                                                                                k["title"])))
  workdir, _ = trained_workdir
  write_npz(str(tmp_path / "scan.npz"), images=synthetic.generate(2, 96, 64, seed=4).images)
  monkeypatch.setattr(geom, "LOW_SUPPORT", 1.01)              # every scan is below it
  explain.run(workdir, str(tmp_path / "scan.npz"), str(tmp_path / "out"), target="box",
              box=(10, 0, 9999, 40), overrides={"explain.max_scans": 2})
  out = capsys.readouterr().out
  (note,) = [line for line in out.splitlines() if line.startswith("note: --cam_box")]
  assert note == ("note: --cam_box (10, 0, 9999, 40) reaches beyond the model's view of "
                  "scan_000 (scan rows 35-83, columns 0-64); its maps explain the part inside, "
                  "(35, 0, 83, 40) (drawn dashed)")                  # the tiny model's band
  assert len(drawn) == 2 and "box (dashed): scan rows 35-83, columns 0-40" in drawn[0][1]
  assert all(title.startswith(f"scan_00{i}; LAYERS IN ORDER IN UNDER 50% OF ITS COLUMNS (unlike ")
             for i, (_, title) in enumerate(drawn))             # low support, in the title
  for box, title in drawn:                           # scan_001's band lies a row higher
    assert title.endswith(", columns 0-40 (--cam_box in view)")
    assert box[0] == 0 and box[1] == 0 and box[3] > 0  # from the band's top, model pixels


def test_a_box_outside_every_view_is_refused_before_the_output_folder_is_made(trained_workdir,
                                                                              tmp_path):
  """A --cam_box below the retina band of the scan to explain: one InputError, nothing written
  (the check ran after the run's start, which left a manifest of an unfinished run)."""
  from octseg_jax.errors import InputError
  workdir, _ = trained_workdir
  write_npz(str(tmp_path / "scan.npz"), images=synthetic.generate(1, 96, 64, seed=4).images)
  with pytest.raises(InputError, match=r"--cam_box \(90, 0, 95, 40\): empty inside the "
                     r"model's view of scan_000 of .*scan.npz \(scan rows 35-83, columns 0-64\)"):
    explain.run(workdir, str(tmp_path / "scan.npz"), str(tmp_path / "out"), target="box",
                box=(90, 0, 95, 40))
  assert not (tmp_path / "out").exists()


def test_box_in_view_cuts_a_box_to_the_band_and_the_columns():
  from octseg_jax.data.preprocessing import Placement
  place = Placement(top=100, band_rows=200, width=500, height=496, model_rows=256, model_cols=256)
  assert explain.box_in_view((150, 0, 250, 250), place) == (150, 0, 250, 250)
  assert explain.box_in_view((0, -5, 9999, 9999), place) == (100, 0, 300, 500)


def test_explain_box_maps_scan_pixels_to_model_pixels():
  from octseg_jax.data.preprocessing import Placement
  place = Placement(top=100, band_rows=200, width=500, height=496, model_rows=256, model_cols=256)
  assert explain.model_box((150, 0, 250, 250), place) == (64, 0, 192, 128)
  # a model pixel covers 200 / 256 scan rows and 500 / 256 scan columns
  np.testing.assert_allclose(explain.model_pixel_um(place, {"row_um": 3.87, "col_um": 11.33}),
                             (3.87 * 200 / 256, 11.33 * 500 / 256), rtol=1e-12)
  assert explain.model_pixel_um(place, {"row_um": 4.0, "col_um": None}) == (3.125, None)


def test_benchmark_smoke(tmp_path):
  from octseg_jax.modes import benchmark
  result = benchmark.run(tiny_config(), str(tmp_path))
  saved = json.loads((tmp_path / "benchmark.json").read_text())
  assert saved["batch"] == 4 and saved["input_shape"] == [48, 64]
  assert saved["train_step"]["median_s"] > 0 and saved["flops_per_step"] > 0
  assert result["explain_ratio_to_forward_backward"] > 0
  from octseg_jax.models.flops import model_train_step_conv_flops
  assert saved["conv_flops_per_step"] == model_train_step_conv_flops(tiny_config().model, 4,
                                                                     (48, 64))
  record = json.loads((tmp_path / "provenance.json").read_text())
  assert record["wall_time_s"] > saved["compile_s"]
  assert json.loads((tmp_path / "config.json").read_text())["model"]["widths"] == [4, 8]


def test_eval_scores_the_labels_predict_draws_with_smoothing(trained_workdir, tmp_path, capsys):
  """--config.predict.smooth_sd_columns: eval's topology-fixed scores are those of the ordered
  labels smoothed along the B-scan (recomputed here from the probabilities), the setting is
  recorded, and metrics.md and the console say so."""
  from octseg_jax.learning import metrics
  from octseg_jax.outputs import report
  from octseg_jax.serving import inference
  workdir, _ = trained_workdir
  s = synthetic.generate(6, 100, 70, seed=3)        # scans where the tiny model's labels vary
  write_npz(str(tmp_path / "scans.npz"), images=s.images, masks=s.masks)
  result = evaluate.run(workdir, str(tmp_path / "scans.npz"), str(tmp_path / "eval"),
                        {"predict.smooth_sd_columns": 6.0})
  trained = inference.load_trained(workdir)
  images, masks = list(s.images), list(s.masks)
  cm, changed = 0, 0
  for out, m in zip(inference.predict_outputs(trained, images), masks):
    ordered = geom.ordered_labels(out["probs"])[0]
    labels = geom.smooth_labelling(ordered, 6.0)
    changed += int((labels != ordered).sum())
    cm = cm + np.asarray(metrics.confusion_matrix(m, labels, 8), np.int64)
  assert changed > 0                                 # the setting moves some pixels here
  fix = result["topology"]
  assert fix["smooth_sd_columns"] == 6.0
  assert fix["literature"]["mean_layer_dice"] == pytest.approx(
      metrics.summarise(cm)["literature"]["mean_layer_dice"], rel=1e-12)
  sentence = "then smoothed along the B-scan (Gaussian, sd 6 columns; predict.smooth_sd_columns)"
  assert sentence in (tmp_path / "eval" / "metrics.md").read_text()
  assert sentence in report.console_summary(result)
  assert "(order fix, smoothed along the B-scan with sd 6 columns, as predict outputs" in \
      capsys.readouterr().out                                   # the headline line too
  predict.run(workdir, str(tmp_path / "scans.npz"), str(tmp_path / "pred"), figures="none",
              overrides={"predict.smooth_sd_columns": 6.0})
  with np.load(tmp_path / "pred" / "scans.npz") as d:            # what predict wrote
    written = metrics.summarise(sum(np.asarray(metrics.confusion_matrix(m, p, 8), np.int64)
                                    for m, p in zip(masks, d["pred_ordered"])))
    true = np.concatenate([geom.boundaries_from_labels(m) for m in masks], axis=-1)
    err = geom.boundary_error(np.concatenate(list(d["boundaries"]), axis=-1), true, 3.87)
  assert fix["literature"]["mean_layer_dice"] == written["literature"]["mean_layer_dice"]
  np.testing.assert_allclose(result["raw"]["geometry_subpixel"]["mae_um"], err["mae_um"],
                             rtol=1e-12)
  plain = evaluate.run(workdir, str(tmp_path / "scans.npz"), str(tmp_path / "plain"))
  assert plain["topology"]["smooth_sd_columns"] == 0.0
  assert "smoothed along" not in report.console_summary(plain)


def test_eval_reports_um_at_the_files_own_row_size(trained_workdir, tmp_path, capsys):
  """Boundary errors in um at the file's scale_mm row size, or --pixel_um for a file without
  one (the pixel errors unchanged); files of two row sizes, or --pixel_um for the validation
  split, are refused with one line."""
  import main
  workdir, _ = trained_workdir
  s = synthetic.generate(2, 96, 64, seed=4)
  write_npz(str(tmp_path / "own.npz"), images=s.images, masks=s.masks,
            scale_mm=np.array([0.12, 0.0025, 0.01]))
  write_npz(str(tmp_path / "plain.npz"), images=s.images, masks=s.masks)
  own = evaluate.run(workdir, str(tmp_path / "own.npz"), str(tmp_path / "a"))
  given = evaluate.run(workdir, str(tmp_path / "plain.npz"), str(tmp_path / "b"), pixel_um="2")
  for result, row_um, source in ((own, 2.5, "file"), (given, 2.0, "--pixel_um")):
    g = result["raw"]["geometry"]
    np.testing.assert_allclose(g["mae_um"], np.asarray(g["mae_px"]) * row_um, rtol=1e-6)
    assert result["pixel_um_source"] == source
  np.testing.assert_array_equal(own["raw"]["geometry"]["mae_px"],
                                given["raw"]["geometry"]["mae_px"])
  manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
  assert manifest["scale"] == {"row_um": 2.5, "source": "file"}
  assert manifest["scales"] == {str(tmp_path / "own.npz"): {"row_um": 2.5, "col_um": 10.0,
                                                            "source": "file"}}
  (tmp_path / "mixed").mkdir()
  for name in ("own.npz", "plain.npz"):
    os.replace(tmp_path / name, tmp_path / "mixed" / name)
  args = ["main.py", "--mode=eval", f"--workdir={workdir}", f"--output={tmp_path / 'c'}"]
  capsys.readouterr()
  assert main.run_command(args + [f"--input={tmp_path / 'mixed'}"]) == 2
  assert capsys.readouterr().err.strip() == (
      f"error: {tmp_path / 'mixed'}: its files have different pixel sizes ({tmp_path}/mixed/"
      "own.npz: 2.5 um per row, 10 um per column, from the file; "
      f"{tmp_path}/mixed/plain.npz: 3.87 um per row, assumed: default (data.pixel_um)); eval "
      "reports boundary errors at one scale: score them in separate runs")
  assert main.run_command(args + ["--pixel_um=2"]) == 2
  assert capsys.readouterr().err.strip().startswith("error: --pixel_um: only for files given "
                                                    "with --input")


def test_eval_says_it_scores_training_scans_before_it_scores_them(trained_workdir, tmp_path,
                                                                    capsys, monkeypatch):
  """Scoring a workdir's own training scans (all of pretrained/'s validation split) takes
  minutes: eval notes the overlap before predicting, and warns again with the numbers."""
  from octseg_jax.serving import inference
  workdir, _ = trained_workdir
  s = synthetic.generate(2, 96, 64, seed=5)
  write_npz(str(tmp_path / "scans.npz"), images=s.images, masks=s.masks)
  monkeypatch.setattr(inference, "training_overlap",
                      lambda trained, names, images=None: {"scans_in_training": 2})
  predict_all = evaluate.predict_all
  monkeypatch.setattr(evaluate, "predict_all",
                      lambda *a: print("predicting") or predict_all(*a))
  evaluate.run(workdir, str(tmp_path / "scans.npz"), str(tmp_path / "eval"))
  lines = capsys.readouterr().out.splitlines()
  seen = "2 of 2 scans were in the model's training set (matched by scan name or pixels)"
  assert lines[:2] == [f"note: {seen}", "predicting"]
  assert any(line.startswith(f"warning: {seen}") for line in lines[2:])
