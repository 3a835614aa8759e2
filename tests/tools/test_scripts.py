"""The experiment scripts' pure parts: ablation overrides and the summary tables."""

import json
import os
import shutil
import socket

import numpy as np
import pytest

from octseg_jax.config.paths import flatten as flat
from conftest import load_script


def test_each_ablation_changes_exactly_its_fields():
  from configs import duke_cpu, duke_gpu
  from configs.ablations import ABLATIONS
  from octseg_jax.config.paths import apply_overrides
  for module in (duke_gpu, duke_cpu):
    base = flat(module.get_config())
    for name, overrides in ABLATIONS.items():
      changed = flat(apply_overrides(module.get_config(), overrides))
      diff = {k for k in base if base[k] != changed[k]}
      assert diff == set(overrides), (module.__name__, name, diff)


def fold(dice, mae):
  return {"native": {"mean_layer_dice": dice, "boundary_mae_um": [mae, mae + 2.0],
                     "topology": {"mean_layer_dice": dice + 0.01,
                                  "boundary_mae_um": [mae - 1.0, mae - 1.0]}},
          "train_s": 100.0}


def test_cv_table_pairs_ablations_with_the_baseline_folds_they_share():
  s = load_script("summarise_results")
  results = {"base": {"fold0": fold(0.80, 5.0), "fold1": fold(0.90, 7.0)},
             "variant": {"fold1": fold(0.85, 6.0), "fold2": {"skipped": "budget"}},
             "absent_from_plan": {}}
  lines = s.cv_table(results, "base", ["variant", "absent_from_plan"]).splitlines()
  assert len(lines) == 4          # header, rule, base, variant (no row for runs never made)
  base = [c.strip() for c in lines[2].split("|")[1:-1]]
  variant = [c.strip() for c in lines[3].split("|")[1:-1]]
  # Mean ± population sd over folds: Dice (0.80, 0.90); boundary MAE per fold = mean of the
  # boundaries (6, 8) -> 7 ± 1.
  assert base[:7] == ["base", "fold0, fold1", "0.8500 ± 0.0500", "0.8600 ± 0.0500",
                      "7.0000 ± 1.0000", "5.0000 ± 1.0000", ""]
  # The variant ran fold 1 only: compared with the baseline's fold 1 (0.90), not its mean.
  assert variant[:7] == ["variant", "fold1", "0.8500", "0.8600", "7.0000", "5.0000",
                         "-0.0500 (1)"]


def test_make_phantom_writes_the_training_phantom_in_the_npz_format(tmp_path):
  from octseg_jax.data import inputs, synthetic
  script = load_script("make_phantom")
  script.main([f"--output={tmp_path / 'p.npz'}", "--num_scans=2", "--height=96",
               "--width=64", "--seed=3"])
  expected = synthetic.generate(2, 96, 64, 3)
  with np.load(tmp_path / "p.npz") as f:
    np.testing.assert_array_equal(f["images"], expected.images)
    np.testing.assert_array_equal(f["masks"], expected.masks)
  (loaded,) = inputs.load_path(str(tmp_path / "p.npz"), True, 4096)
  np.testing.assert_array_equal(loaded.masks, expected.masks)
  script.main([f"--output={tmp_path / 'v.npz'}", "--volume", "--num_scans=5", "--height=96",
               "--width=64"])
  with np.load(tmp_path / "v.npz") as f:
    assert f["images"].shape == (5, 96, 64)
    np.testing.assert_allclose(f["scale_mm"][:2], [0.125, 0.00387 * 496 / 96])


@pytest.mark.parametrize("args,message", [
    (["--num_scans=0"], "--num_scans=0: must be at least 1"),
    (["--height=-5"], "--height=-5: must be from 16 to 4096 pixels"),
    (["--width=5000"], "--width=5000: must be from 16 to 4096 pixels"),
    (["--seed=-1"], "--seed=-1: must be at least 0")])
def test_make_phantom_refuses_bad_options_in_one_line_writing_nothing(tmp_path, capsys, args,
                                                                     message):
  script = load_script("make_phantom")
  out = tmp_path / "p.npz"
  assert script.main([f"--output={out}", "--width=32", "--num_scans=2"] + args) == 2
  assert capsys.readouterr().err == f"error: {message}\n"
  assert os.listdir(tmp_path) == []


def test_make_phantom_never_writes_over_a_file_or_into_a_folder_name(tmp_path, capsys):
  script = load_script("make_phantom")
  old = tmp_path / "scans.npz"
  old.write_bytes(b"earlier scans")
  assert script.main([f"--output={old}"]) == 2
  assert capsys.readouterr().err == (f"error: --output={old}: exists; remove it or name another "
                                     "file\n")
  assert old.read_bytes() == b"earlier scans"
  assert script.main([f"--output={tmp_path}"]) == 2
  assert capsys.readouterr().err == (f"error: --output={tmp_path}: is a folder; name the .npz "
                                     "file to write\n")
  assert script.main([f"--output={tmp_path / 'gone' / 'p.npz'}"]) == 2
  assert capsys.readouterr().err == (f"error: --output={tmp_path / 'gone' / 'p.npz'}: its folder "
                                     "does not exist\n")
  assert os.listdir(tmp_path) == ["scans.npz"]


def test_compare_cams_resume_keeps_saved_methods_only_for_the_same_run(tmp_path, capsys):
  import json
  import pytest
  s = load_script("compare_cams")
  path = str(tmp_path / "compare_cams.json")
  result = {"workdir": "w", "epoch": 3, "layers": ["head"], "scans": [("a_b1", 4, 5)],
            "fractions": [0.0, 0.5], "noise": 0.01, "methods": {}}
  assert s.saved_methods(path, result) == {}
  saved = dict(result, scans=[["a_b1", 4, 5]], methods={"gradcam": {"seconds": 1.0}})
  with open(path, "w") as f:
    json.dump(saved, f)
  assert s.saved_methods(path, result) == {"gradcam": {"seconds": 1.0}}
  with pytest.raises(SystemExit) as e:
    s.saved_methods(path, dict(result, scans=[("a_b2", 4, 5)], epoch=4))
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err == (f"error: --resume: {path} was written for another epoch, scans; "
                 "choose another --output")


def test_cam_evidence_writes_the_pooled_folds_and_refuses_bad_input_in_one_line(tmp_path,
                                                                                capsys):
  import json
  s = load_script("cam_evidence")
  heldout = tmp_path / "heldout"
  layer = {"morf_mean": [1.0, 0.5], "random_mean": [1.0, 0.9], "faithful_classes": 1,
           "randomisation_similarity": 0.1}
  for fold, subject in (("fold0", "subject_01"), ("fold1", "subject_03")):
    (heldout / fold).mkdir(parents=True)
    (heldout / fold / "compare_cams.json").write_text(json.dumps({
        "workdir": f"/x/runs/base/{fold}_seed0", "scans": [[f"{subject}_b5", 4, 5]],
        "methods": {"hirescam": {"layers": {"dec3_conv1": layer}}}}))
  out = tmp_path / "cam_evidence.json"
  assert s.main([f"--heldout={heldout}", f"--output={out}"]) == 0
  ev = json.loads(out.read_text())
  assert ev["models"] == ("2 campaign fold models, each on B-scans of the subjects it never "
                          "trained on (base/fold0_seed0: subject_01_b5; base/fold1_seed0: "
                          "subject_03_b5)")
  assert ev["methods"]["hirescam"]["dec3_conv1"]["folds_passed"] == [0, 2]
  capsys.readouterr()
  assert s.main([f"--heldout={tmp_path / 'none'}", f"--output={out}"]) == 2
  assert capsys.readouterr().err == f"error: {tmp_path / 'none'}: not a folder\n"
  (heldout / "fold1" / "compare_cams.json").write_text(json.dumps({"workdir": "w"}))
  assert s.main([f"--heldout={heldout}", f"--output={tmp_path / 'o.json'}"]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"error: {heldout}: a compare_cams.json is not scripts/compare_cams.py")
  assert err.count("\n") == 1 and not (tmp_path / "o.json").exists()


def test_fluid_column_figure_picks_the_scan_with_the_largest_error_in_fluid_columns(
    trained_workdir, tmp_path, capsys):
  """By hand: scan 0's OPL/ONL is 2 rows off in its one fluid column (and 9 off in a dry one,
  which does not count); scan 1's 3 rows off in one of its two fluid columns, the other unknown
  (NaN, skipped) -> 3 > 2, scan 1. A scan without a fluid column gives NaN. The script then
  draws a tiny workdir's validation scan, and refuses a missing output folder in one line."""
  s = load_script("fluid_column_figure")
  true = np.zeros((8, 3))
  pred0, pred1 = true.copy(), true.copy()
  pred0[4] = [2, 9, 0]
  pred1[4] = [0, 3, np.nan]
  f0, f1 = np.zeros((5, 3), np.uint8), np.zeros((5, 3), np.uint8)
  f0[2, 0] = 1
  f1[1, 1:] = 1
  assert s.fluid_column_error(pred0, true, f0) == 2.0
  assert s.fluid_column_error(pred1, true, f1) == 3.0
  assert np.isnan(s.fluid_column_error(pred0, true, np.zeros((5, 3))))
  assert s.worst_scan([pred0, pred1], [true, true], [f0, f1]) == 1
  out = tmp_path / "figure.png"
  assert s.main([f"--workdir={trained_workdir[0]}", f"--output={out}"]) == 0
  assert out.stat().st_size > 10_000
  assert s.main([f"--workdir={trained_workdir[0]}", f"--output={tmp_path}/no/f.png"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"error: --output={tmp_path}/no/f.png: its folder does not exist"]


def test_smoothing_cv_chooses_each_folds_sd_on_the_other_folds(trained_workdir, tmp_path):
  """By hand: a gets sd 2 (b+c: 1.55 at sd 2 > 1.51 at sd 4), b gets sd 4 (a+c: 1.62 > 1.61),
  c gets sd 2 (a+b: 1.56 > 1.55); each gain is read at that sd against sd 0 (0.01, 0.02,
  0.02); the shipped sd is the best over all folds (2: 2.36). One fold chooses nothing. The
  script scores a tiny workdir at every sd, and its validation subject's files given with
  --input exactly as its validation split."""
  s = load_script("smoothing_cv")
  sds = [0.0, 2.0, 4.0]

  def fold(*dice):
    return {"by_sd": {f"{sd:g}": {"mean_layer_dice": d} for sd, d in zip(sds, dice)}}
  folds = {"a": fold(0.80, 0.81, 0.83), "b": fold(0.70, 0.75, 0.72), "c": fold(0.78, 0.80, 0.79)}
  cv = s.leave_one_fold_out(folds, sds)
  assert {k: v["sd"] for k, v in cv["per_fold"].items()} == {"a": 2.0, "b": 4.0, "c": 2.0}
  assert [v["gain"] for v in cv["per_fold"].values()] == pytest.approx([0.01, 0.02, 0.02])
  assert cv["mean_gain"] == pytest.approx(0.05 / 3) and cv["chosen_sd"] == 2.0
  assert s.leave_one_fold_out({"a": folds["a"]}, sds) is None
  out = tmp_path / "cv.json"
  twin = tmp_path / "twin"
  shutil.copytree(trained_workdir[0], twin)
  held_out = _phantom_subject_folder(tmp_path, 3)
  assert s.main([f"--output={out}", "--sds=0,3", f"--set=tiny:{trained_workdir[0]}",
                 f"--set=read:{twin}", f"--input=read:{held_out}"]) == 0
  record = json.loads(out.read_text())
  tiny = record["sets"]["tiny"]
  assert tiny["cv"] is None and record["sds"] == [0.0, 3.0]
  only = next(iter(tiny["folds"].values()))
  assert list(only["by_sd"]) == ["0", "3"] and only["members"] == [only["workdir"]]
  assert 0 < only["by_sd"]["3"]["mean_layer_dice"] <= 1
  read = record["sets"]["read"]["folds"]["twin"]          # the same subject, from its file
  assert read["by_sd"] == only["by_sd"] and read["subjects"] == [3] and read["scans"] == 4
  assert read["pixel_um"] == only["pixel_um"] == 3.87 and read["skipped"] == []


def test_smoothing_cv_refuses_bad_input_in_one_line_before_any_model_predicts(
    trained_workdir, tmp_path, capsys, monkeypatch):
  """Bad options, sets and --input folders (one of scans the model trained on among them) are
  refused in one line, exit status 2, before any model predicts and with no output written."""
  from octseg_jax.modes import evaluate
  s = load_script("smoothing_cv")
  twin = tmp_path / "twin"
  shutil.copytree(trained_workdir[0], twin)
  held_out, trained_on = _phantom_subject_folder(tmp_path, 3), _phantom_subject_folder(tmp_path, 1)
  unlabelled = _phantom_subject_folder(tmp_path, 3, unlabelled=True)

  def predict_all(*args):
    raise AssertionError("a model predicted before the input was checked")
  monkeypatch.setattr(evaluate, "predict_all", predict_all)
  for args, problem in (([f"--set=tiny:{tmp_path}/nope"], f"{tmp_path}/nope is not a folder"),
                        ([f"--set=t:{trained_workdir[0]},{twin}"], "both score subject 3"),
                        ([f"--set=t:{trained_workdir[0]}", f"--input=t:{trained_on}"],
                         f"{trained_on}: {trained_workdir[0]} trained on its scan subject_01_000"),
                        ([f"--set=t:{trained_workdir[0]}", f"--input=t:{tmp_path}/none"],
                         f"--input=t:...: {tmp_path}/none is not a folder"),
                        ([f"--set=t:{trained_workdir[0]}", f"--input=t:{unlabelled}"],
                         "no labelled pixel in any mask"),
                        ([f"--set=t:{trained_workdir[0]}", f"--input=t:{held_out},{held_out}"],
                         "2 folders for the set's 1 fold models"),
                        ([f"--set=t:{trained_workdir[0]}", f"--input=u:{held_out}"],
                         "no --set is named 'u'"),
                        (["--sds=0,inf", f"--set=t:{trained_workdir[0]}"], "expected a number"),
                        ([f"--set=t:{trained_workdir[0]}", "--config.predict.smooth_sd_columns=2"],
                         "this script sets it"),
                        (["--set=tiny"], "expected NAME:WORKDIR"),
                        (["--sds=2,4", f"--set=t:{trained_workdir[0]}"], "including 0"),
                        ([f"--set=t:{trained_workdir[0]}", "--config.model.widths=[4]"],
                         "set when the model was trained")):
    assert s.main([f"--output={tmp_path}/x.json"] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0], err
  assert not (tmp_path / "x.json").exists()


def _phantom_subject_folder(tmp_path, subject: int, unlabelled: bool = False) -> str:
  """A folder holding the tiny config's phantom scans of one subject as a Duke .npz file (with
  `unlabelled`, every mask pixel 255)."""
  from configs import tiny
  from octseg_jax.data import synthetic
  c = tiny.get_config().data.synthetic
  scans = synthetic.generate(c.num_scans, c.height, c.width, c.seed, c.cysts, c.scans_per_subject)
  keep = scans.subjects == subject
  folder = tmp_path / f"subject{subject}{'_unlabelled' if unlabelled else ''}"
  folder.mkdir()
  masks = np.full_like(scans.masks[keep], 255) if unlabelled else scans.masks[keep]
  np.savez(folder / f"subject_{subject:02d}.npz", images=scans.images[keep], masks=masks,
           fluid=scans.fluid[keep], subject=scans.subjects[keep])
  return str(folder)


def _fold_eval(folder, subjects, columns, wrong, flagged, hits, own=2.0):
  """A metrics.json in `folder` with a position-sd flag curve at thresholds 1, 2, 3 um (each
  column 8 pairs, 1 um of error per pair; the eval flagged at 2 um)."""
  curve = {"wrong_um": 7.74, "thresholds_um": [1.0, 2.0, 3.0], "columns": columns,
           "wrong": wrong, "pairs": 8 * columns, "error_sum_um": 8.0 * columns,
           "flagged": flagged, "hits": hits, "flagged_pairs": [8 * f for f in flagged],
           "flagged_error_sum_um": [8.0 * f for f in flagged]}
  folder.mkdir()
  (folder / "metrics.json").write_text(json.dumps({
      "per_subject_mean_layer_dice": {str(s): 0.8 for s in subjects}, "calibration": {
          "position_sd_columns": {"threshold_um": own}, "position_sd_columns_curve": curve}}))
  return str(folder / "metrics.json")


def test_flag_threshold_cv_chooses_each_folds_threshold_on_the_other_folds(tmp_path, capsys):
  """By hand (F1 = 2 hits / (flagged + wrong)): a's others (b+c) F1 20/25, 12/17, 4/12 choose
  1 um, held out 8/12; b's (a+c) 24/29, 14/21, 6/15 choose 1 um, held out 4/8; c's (a+b)
  12/20, 10/12, 2/7 choose 2 um, held out 8/13; all folds 28/37, 18/25, 6/17 choose 1 um. The
  evals' own threshold (2 um) is read apart; bad input is one line, exit status 2."""
  s = load_script("flag_threshold_cv")
  paths = [_fold_eval(tmp_path / "a", [1, 2], 10, 4, [8, 4, 1], [4, 3, 1]),
           _fold_eval(tmp_path / "b", [3, 4], 10, 2, [6, 2, 0], [2, 2, 0]),
           _fold_eval(tmp_path / "c", [5, 6], 10, 8, [9, 5, 2], [8, 4, 2])]
  out = tmp_path / "cv.json"
  assert s.main([f"--output={out}", f"--set=m:{','.join(paths)}"]) == 0
  flag = json.loads(out.read_text())["sets"]["m"]["flags"]["position_sd"]
  cv = flag["cv"]
  assert [v["held_out"]["threshold_um"] for v in cv["per_fold"].values()] == [1.0, 1.0, 2.0]
  assert [v["held_out"]["f1"] for v in cv["per_fold"].values()] == pytest.approx(
      [8 / 12, 4 / 8, 8 / 13])
  assert cv["per_fold"]["c"]["chosen_on_others"]["f1"] == pytest.approx(10 / 12)
  assert cv["held_out_mean"]["f1"] == pytest.approx((8 / 12 + 4 / 8 + 8 / 13) / 3)
  assert cv["chosen_um"] == 1.0 and cv["all_folds"]["f1"] == pytest.approx(28 / 37)
  assert flag["current"]["b"]["recall"] == 1.0 and flag["current"]["a"]["precision"] == 0.75
  assert "m position_sd: chosen 1 um" in capsys.readouterr().out
  assert json.loads(out.read_text())["sets"]["m"]["workdirs"] == {"a": None, "b": None, "c": None}
  shared = _fold_eval(tmp_path / "d", [2, 7], 10, 1, [1, 1, 1], [1, 1, 1])
  lacking = _fold_eval(tmp_path / "f", [9], 10, 1, [1, 1, 1], [1, 1, 1], own=2.5)
  (tmp_path / "e").mkdir()
  (tmp_path / "e" / "metrics.json").write_text("{")
  for arg, problem in ((f"--set=m:{paths[0]},{shared}", "d and a both score subject 2"),
                       (f"--set=m:{tmp_path}/e/metrics.json", "not JSON"),
                       (f"--set=m:{lacking}", "f's position_sd curve lacks its own threshold 2.5"),
                       (f"--set=m:{tmp_path}/nope.json", "cannot be read"),
                       ("--set=m", "expected NAME:METRICS_JSON")):
    assert s.main([f"--output={tmp_path}/x.json", arg]) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1, err
  assert not os.path.exists(tmp_path / "x.json")


def test_add_fingerprints_gives_an_old_workdir_what_training_records(trained_workdir, tmp_path,
                                                                      capsys):
  """A workdir trained before fingerprints (split.json without them) gets the ones training
  records now, from its configured data, and nothing else in split.json changes; a split naming
  a scan the data lacks is refused in one line before anything is written."""
  script = load_script("add_fingerprints")
  old = str(tmp_path / "old")
  shutil.copytree(trained_workdir[0], old)
  with open(f"{old}/split.json") as f:
    trained = json.load(f)
  assert len(trained["train"]["fingerprints"]) == len(trained["train"]["names"]) > 0
  before = json.loads(json.dumps(trained))
  del before["train"]["fingerprints"]
  with open(f"{old}/split.json", "w") as f:
    json.dump(before, f)
  assert script.main([old]) == 0
  with open(f"{old}/split.json") as f:
    assert json.load(f) == trained
  assert not os.path.exists(f"{old}/.lock")     # held while it ran, released
  before["train"]["names"].append("no_such_scan")
  with open(f"{old}/split.json", "w") as f:
    json.dump(before, f)
  assert script.main([old]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"error: {old}/split.json: 1 training scans (first no_such_scan) are not in "
                 "the configured data (synthetic)"]
  with open(f"{old}/split.json") as f:
    assert json.load(f) == before
  before["train"]["names"].pop()        # a workdir that a live process trains: refused, as is
  with open(f"{old}/split.json", "w") as f:
    json.dump(before, f)
  with open(f"{old}/.lock", "w") as f:
    f.write(f"{os.getppid()} {socket.gethostname()}\n")
  assert script.main([old]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(f"error: {old}: busy, process {os.getppid()}"), err
  with open(f"{old}/split.json") as f:
    assert json.load(f) == before
  assert os.path.exists(f"{old}/.lock")   # the trainer's lock stays
