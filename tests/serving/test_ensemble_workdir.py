"""Ensemble workdirs (ensemble.json listing member workdirs) as the one trained model of eval
and predict: exact averaging, the fast single-member path, and the uncertainty outputs."""

import csv
import dataclasses
import json
import os
import types

import jax
import numpy as np
import pytest

from conftest import load_script, tiny_config
from octseg_jax.learning import uncertainty
from octseg_jax.serving import inference
from octseg_jax.data import preprocessing, synthetic
from octseg_jax.errors import InputError


@pytest.fixture(scope="module")
def members(tmp_path_factory, trained_workdir):
  """The suite's tiny model and a second one of another seed (same recipe)."""
  from octseg_jax.training import train
  other = str(tmp_path_factory.mktemp("member") / "seed1")
  train.train_and_evaluate(tiny_config(**{"seed": 1, "train.num_epochs": 1}), other, hooks=[])
  return [trained_workdir[0], other]


def _ensemble_dir(tmp_path, members, flip):
  folder = tmp_path / f"ensemble_flip{int(flip)}"
  folder.mkdir()
  (folder / "ensemble.json").write_text(json.dumps({"members": members, "flip": flip}))
  return str(folder)


def test_an_ensemble_averages_its_members_probabilities_exactly(tmp_path, members):
  x = np.random.default_rng(0).random((2, 48, 64)).astype(np.float32)
  singles = [inference.load_trained(m) for m in members]
  plain = inference.load_trained(_ensemble_dir(tmp_path, members, False))
  assert isinstance(plain, inference.Ensemble) and plain.num_views == 2
  np.testing.assert_allclose(plain.probs(x), (singles[0].probs(x) + singles[1].probs(x)) / 2,
                             rtol=1e-6, atol=1e-7)
  flipped = inference.load_trained(_ensemble_dir(tmp_path, members, True))
  views = [s.probs(v)[..., ::-1, :] if mirrored else s.probs(v)
           for s in singles for v, mirrored in ((x, False), (x[..., ::-1].copy(), True))]
  np.testing.assert_allclose(flipped.probs(x), np.mean(views, axis=0), rtol=1e-6, atol=1e-7)
  one = inference.load_trained(str(tmp_path / "ensemble_flip1"), {"predict.members": 1})
  np.testing.assert_array_equal(one.probs(x), singles[0].probs(x))   # the fast path


def test_more_members_than_the_workdir_has_are_refused(tmp_path, members):
  """predict.members above the members of an ensemble, or above 1 for one model: one line
  naming the option and the workdir, before any member is loaded."""
  ensemble = _ensemble_dir(tmp_path, members, False)
  with pytest.raises(InputError, match=r"^--config.predict.members=3: .*ensemble_flip0 has 2 "
                                       r"members \(its ensemble.json\)$"):
    inference.load_trained(ensemble, {"predict.members": 3})
  with pytest.raises(InputError, match=r"^--config.predict.members=2: .* has 1 member \(a "
                                       r"single model\)$"):
    inference.load_trained(members[0], {"predict.members": 2})
  two = inference.load_trained(ensemble, {"predict.members": 2})
  assert isinstance(two, inference.Ensemble) and len(two.members) == 2
  single = inference.load_trained(members[0], {"predict.members": 1})
  assert not isinstance(single, inference.Ensemble) and single.members == [single]


def one_hot_view(ilm, h: int = 20) -> np.ndarray:
  """[h, len(ilm), 8] one-hot probabilities: background above row ilm[c], layers 1..7 below."""
  labels = np.zeros((h, len(ilm)), int)
  for c in range(len(ilm)):
    labels[ilm[c]:ilm[c] + 7, c] = np.arange(1, 8)
  return np.eye(8, dtype=np.float32)[labels]


def test_boundary_uncertainty_and_flags_on_known_disagreement():
  a, b = one_hot_view([5, 5, 5, 5]), one_hot_view([5, 5, 9, 5])   # column 2: ILM..BM 4 rows apart
  sd = uncertainty.boundary_uncertainty_um(np.stack([a, b]), 3.87)
  np.testing.assert_allclose(sd[:, 2], 2 * 3.87)                  # population sd of 4 rows
  np.testing.assert_allclose(sd[:, [0, 1, 3]], 0)
  np.testing.assert_array_equal(uncertainty.flag_columns(sd, 7.0), [False, False, True, False])
  np.testing.assert_array_equal(uncertainty.flag_columns(sd, 8.0), [False] * 4)


def test_predict_with_an_ensemble_writes_uncertainty(tmp_path, members):
  import main
  from octseg_jax.outputs.atomic import write_npz
  scans = synthetic.generate(2, 96, 64, seed=9)
  write_npz(str(tmp_path / "scans.npz"), images=scans.images)
  workdir = _ensemble_dir(tmp_path, members, True)
  assert main.run_command(["main.py", "--mode=predict", f"--workdir={workdir}",
                           f"--input={tmp_path / 'scans.npz'}", f"--output={tmp_path / 'out'}",
                           "--config.predict.uncertain_um=0.5"]) == 0
  with np.load(tmp_path / "out" / "scans.npz") as out:
    assert out["entropy"].shape == (2, 96, 64) and out["entropy"].dtype == np.float16
    assert out["entropy"].min() >= 0 and out["entropy"].max() <= np.log(8) + 1e-3
    sd = out["boundary_sd_um"]
  assert sd.shape == (2, 8, 64)
  rows = list(csv.DictReader(open(tmp_path / "out" / "scans_thickness.csv")))
  flags = np.array([r["uncertain"] == "1" for r in rows]).reshape(2, 64)
  supported = np.array([r["supported"] == "1" for r in rows]).reshape(2, 64)
  with np.load(tmp_path / "out" / "scans.npz") as out:
    np.testing.assert_array_equal(out["supported"], supported)     # the npz says it too
  want = np.array([uncertainty.flag_columns(s, 0.5) for s in sd])
  np.testing.assert_array_equal(flags, want & supported)
  assert all((r["uncertain"] == "") == (r["supported"] == "0") for r in rows)
  manifest = json.load(open(tmp_path / "out" / "manifest.json"))
  assert manifest["scans_with_uncertain_columns"] == int(flags.any(axis=1).sum())
  assert manifest["uncertain_um"] == 0.5                    # the threshold used, recorded
  assert manifest["uncertain_by"] == "boundary_sd_um"
  assert (manifest["members"], manifest["views"]) == (2, 4)  # 2 members, each also mirrored
  assert manifest["member_workdirs"] == members               # in the ensemble's order
  assert {r["uncertain_threshold_um"] for r in rows} == {"0.5"}
  assert {r["uncertain_by"] for r in rows} == {"boundary_sd_um"}


def test_an_ensemble_of_one_model_twice_is_nowhere_uncertain(tmp_path, members):
  """End to end, a known disagreement of zero: members A and A (no flip; their average is A's
  probabilities, as test_an_ensemble_averages_its_members_probabilities_exactly checks) give a
  boundary spread of exactly 0, no uncertain column at a threshold of 0.01 um, and 0 flagged
  scans in the manifest."""
  import main
  from octseg_jax.outputs.atomic import write_npz
  write_npz(str(tmp_path / "scans.npz"), images=synthetic.generate(2, 96, 64, seed=9).images)
  twice = _ensemble_dir(tmp_path, [members[0], members[0]], False)
  assert main.run_command(["main.py", "--mode=predict", f"--workdir={twice}",
                           f"--input={tmp_path / 'scans.npz'}", f"--output={tmp_path / 'out'}",
                           "--config.predict.uncertain_um=0.01"]) == 0
  with np.load(tmp_path / "out" / "scans.npz") as out:
    sd = out["boundary_sd_um"]
  assert sd.shape == (2, 8, 64) and np.isfinite(sd).any() and np.all(sd[np.isfinite(sd)] == 0)
  rows = list(csv.DictReader(open(tmp_path / "out" / "scans_thickness.csv")))
  assert any(r["supported"] == "1" for r in rows)
  assert {r["uncertain"] for r in rows if r["supported"] == "1"} == {"0"}
  manifest = json.load(open(tmp_path / "out" / "manifest.json"))
  assert manifest["scans_with_uncertain_columns"] == 0
  assert (manifest["members"], manifest["views"]) == (2, 2)


def test_eval_of_an_ensemble_reports_calibration_and_uncertainty(tmp_path, members):
  from octseg_jax.modes import evaluate
  result = evaluate.run(_ensemble_dir(tmp_path, members, False), None, str(tmp_path / "eval"))
  assert 0 <= result["calibration"]["ece"] <= 1
  rho = result["calibration"]["uncertainty_vs_error"]["pooled"]
  assert rho["pairs"] > 0 and (np.isnan(rho["rho"]) or -1 <= rho["rho"] <= 1)
  flag = result["calibration"]["uncertain_columns"]
  assert flag["threshold_um"] == 7.74 and 0 <= flag["flagged"] <= flag["columns"] > 0
  assert result["member_workdirs"] == members
  assert result["calibration"]["position_sd_columns"]["predict_flags"] is False   # spread flags
  assert flag["predict_flags"] is True
  text = open(tmp_path / "eval" / "metrics.md").read()
  assert "Expected calibration error" in text
  assert f"{flag['flagged']} of the {flag['columns']} columns predict measures" in text


def test_bad_ensemble_files_are_one_line_errors(tmp_path, members):
  folder = tmp_path / "bad"
  folder.mkdir()
  (folder / "ensemble.json").write_text('{"members": []}')
  with pytest.raises(InputError, match="members"):
    inference.load_trained(str(folder))
  (folder / "ensemble.json").write_text("{")
  with pytest.raises(InputError, match="not a readable JSON"):
    inference.load_trained(str(folder))


def test_explain_of_an_ensemble_explains_its_averaged_output(tmp_path, members):
  """explain of an ensemble workdir (2 members) runs with ROAD and the sanity check; its maps
  are gradcam.ensemble_maps of the members, the probabilities it removes
  pixels from are the ensemble's (the one inference path), and a method that is not linear
  in the gradient is refused in one line."""
  import main
  from octseg_jax.cam import gradcam
  from octseg_jax.modes import explain
  from octseg_jax.outputs.atomic import write_npz
  write_npz(str(tmp_path / "s.npz"), images=synthetic.generate(1, 96, 64, seed=2).images)
  workdir = _ensemble_dir(tmp_path, members, False)
  args = ["main.py", "--mode=explain", f"--workdir={workdir}", f"--input={tmp_path / 's.npz'}"]
  assert main.run_command(args + [f"--output={tmp_path / 'x'}", "--cam_faithfulness=road",
                                  "--cam_sanity", "--config.explain.road_steps=2"]) == 0
  stats = json.load(open(tmp_path / "x" / "cam_stats.json"))
  assert stats["settings"]["views"] == 2 and stats["sanity"]["stages"]
  assert stats["settings"]["member_workdirs"] == members
  assert main.run_command(args + [f"--output={tmp_path / 'y'}", "--cam_method=gradcampp"]) == 2
  ensemble = inference.load_trained(workdir)
  x = np.random.default_rng(1).random((1, 48, 64)).astype(np.float32)
  ex = explain.make_explainer(ensemble, ("dec0_conv1",), "gradcam", "all")
  got = ex.explain(x)
  pairs = [(m.model, m.variables) for m in ensemble.members]
  want = jax.jit(lambda x: gradcam.ensemble_maps(pairs, x, ("dec0_conv1",), "gradcam"))(x)
  np.testing.assert_allclose(np.asarray(got["dec0_conv1"]["raw"]),
                             np.asarray(want["dec0_conv1"]["raw"]), rtol=1e-5, atol=1e-7)
  views = inference.load_trained(_ensemble_dir(tmp_path, members, True))   # 4 views with flip
  ex = explain.make_explainer(views, ("dec0_conv1",), "gradcam", "all")
  np.testing.assert_allclose(np.exp(np.asarray(ex.logits(ex.variables, x))), views.probs(x),
                             rtol=1e-5, atol=1e-7)


def test_a_config_file_for_inference_names_what_the_workdir_uses(tmp_path, members, capsys):
  """--config=FILE in predict is refused naming the file the workdir's settings come from: an
  ensemble's ensemble.json (it has no config.json), a single model's config.json."""
  import main
  for workdir, stored in ((_ensemble_dir(tmp_path, members, False), "ensemble.json (its "
                           "members' config.json)"), (members[0], "config.json")):
    capsys.readouterr()
    assert main.run_command(["main.py", "--mode=predict", f"--workdir={workdir}",
                             "--input=x.npz", "--config=configs/tiny.py"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --config: --mode=predict uses {workdir}/{stored}; change inference settings "
        "with --config.FIELD=VALUE instead, for example --config.explain.max_scans=1")


def test_members_with_different_validation_splits_are_refused():
  from octseg_jax.errors import InputError
  from octseg_jax.modes import evaluate
  a = types.SimpleNamespace(split={"val": {"names": ["s1"]}}, workdir="a")
  b = types.SimpleNamespace(split={"val": {"names": ["s2"]}}, workdir="b")
  with pytest.raises(InputError) as refused:
    evaluate.check_common_validation([a, b])
  assert str(refused.value) == ("--input: needed to score this ensemble: its members were "
                                "validated on different scans (b/split.json against a's: "
                                "members of other folds?), so it has no common split; give "
                                "labelled scans that none of its members trained on")
  # Same names, other pixels (val.sha256) are refused; a member without a digest is not.
  c, d, e = (types.SimpleNamespace(split={"val": {"names": ["s1"], **v}}, workdir=w)
             for v, w in (({"sha256": "x"}, "c"), ({"sha256": "y"}, "d"), ({}, "e")))
  with pytest.raises(InputError, match="d/split.json"):
    evaluate.check_common_validation([c, d])
  evaluate.check_common_validation([c, e])


def test_eval_checks_every_members_digest_of_the_validation_scans():
  from octseg_jax.data import pipeline
  from octseg_jax.errors import InputError
  from octseg_jax.modes import evaluate
  images, masks = [np.zeros((3, 4), np.uint8)], [np.ones((3, 4), np.uint8)]
  digest = pipeline.scans_digest(images, masks)
  data = types.SimpleNamespace(source="synthetic")
  def trained(*digests):
    members = [types.SimpleNamespace(split={"val": {"names": ["s"]} | (
        {"sha256": d} if d else {})}) for d in digests]
    return types.SimpleNamespace(members=members, workdir="w",
                                 config=types.SimpleNamespace(data=data))
  evaluate.check_scans_digest(trained(digest, None), images, masks)   # old member: unchecked
  for digests in ((None, "other"), (digest, "other")):
    with pytest.raises(InputError, match=r"^w/split.json: the validation scans have the names, "
                       "not the pixels"):
      evaluate.check_scans_digest(trained(*digests), images, masks)



def test_eval_ensemble_script_scores_one_model_twice_like_the_model(tmp_path, trained_workdir):
  """Two copies of one member: the averaged probabilities are the member's, so eval's numbers
  are the single model's, and the members' boundary spread is 0 everywhere (rho undefined)."""
  from octseg_jax.modes import evaluate
  workdir = trained_workdir[0]
  single = evaluate.run(workdir, None, str(tmp_path / "single"))
  script = load_script("eval_ensemble")
  script.make_ensemble(str(tmp_path / "twice"), [workdir, workdir], flip=False)
  spec = json.load(open(tmp_path / "twice" / "ensemble.json"))
  assert spec == {"members": [os.path.abspath(workdir)] * 2, "flip": False}
  twice = evaluate.run(str(tmp_path / "twice"), None, str(tmp_path / "twice"))
  assert twice["raw"]["literature"]["mean_layer_dice"] == pytest.approx(
      single["raw"]["literature"]["mean_layer_dice"], rel=1e-6)
  assert twice["calibration"]["ece"] == pytest.approx(single["calibration"]["ece"], rel=1e-5)
  assert np.isnan(twice["calibration"]["uncertainty_vs_error"]["pooled"]["rho"])
  with pytest.raises(InputError, match="already an ensemble workdir"):
    script.make_ensemble(str(tmp_path / "twice"), [workdir], flip=True)


def test_a_failed_ensemble_build_leaves_nothing_and_an_ensemble_is_no_member(
    tmp_path, trained_workdir, monkeypatch, capsys):
  """A failure after ensemble.json was written (here: its scoring) removes what the command
  made, so the same command can be rerun; an ensemble workdir given as a member is refused."""
  import sys
  workdir = trained_workdir[0]
  script = load_script("eval_ensemble")

  def refused(*args, **kwargs):
    raise InputError("scoring refused")
  monkeypatch.setattr(script.evaluate, "run", refused)
  out = tmp_path / "ens"
  monkeypatch.setattr(sys, "argv", ["eval_ensemble.py", workdir, workdir,
                                    f"--output={out / 'deeper'}"])
  with pytest.raises(SystemExit) as e:
    script.main()
  assert e.value.code == 2 and not out.exists()            # the folders it made, too
  assert capsys.readouterr().err == "error: scoring refused\n"
  script.make_ensemble(str(out), [workdir, workdir], flip=False)
  with pytest.raises(InputError) as e:
    script.make_ensemble(str(tmp_path / "nested"), [str(out), workdir], flip=False)
  assert str(e.value) == (f"{out}: is itself an ensemble workdir; members are training "
                          "workdirs (list its members instead)")
  assert not (tmp_path / "nested").exists()
  # An undefined rank correlation says why.
  scored = {"calibration": {"ece": 0.01, "uncertainty_vs_error": {
      "pooled": {"rho": float("nan"), "pairs": 0}}}}
  monkeypatch.setattr(script.evaluate, "run", lambda *a, **k: scored)
  monkeypatch.setattr(sys, "argv", ["eval_ensemble.py", workdir, workdir,
                                    f"--output={tmp_path / 'ens2'}"])
  script.main()
  assert capsys.readouterr().out.strip().endswith(
      "rho(boundary spread, boundary error) nan (0 (boundary, column) pairs with both a "
      "spread and an error)")


def test_a_packaged_ensemble_is_self_contained_and_predicts_like_its_sources(tmp_path, members):
  """--package copies each member's best checkpoint and files under NEW/members/ and names them
  by relative path: moved elsewhere, it gives the probabilities of the ensemble of the source
  workdirs exactly; an existing output and repeated member names are refused."""
  script = load_script("eval_ensemble")
  script.package(str(tmp_path / "pkg"), members, flip=True)
  spec = json.load(open(tmp_path / "pkg" / "ensemble.json"))
  names = [os.path.basename(m) for m in members]
  assert spec == {"members": [f"members/{n}" for n in names], "flip": True,
                  "sources": [os.path.abspath(m) for m in members]}
  assert sorted(os.listdir(tmp_path / "pkg" / "members" / names[0])) == [
      "best", "config.json", "log.csv", "provenance.json", "split.json"]
  os.rename(tmp_path / "pkg", tmp_path / "moved")
  x = np.random.default_rng(4).random((1, 48, 64)).astype(np.float32)
  np.testing.assert_array_equal(inference.load_trained(str(tmp_path / "moved")).probs(x),
                                inference.load_trained(_ensemble_dir(tmp_path, members,
                                                                     True)).probs(x))
  with pytest.raises(InputError, match="already exists"):
    script.package(str(tmp_path / "moved"), members, flip=True)
  with pytest.raises(InputError, match="repeat"):
    script.package(str(tmp_path / "again"), [members[0], members[0]], flip=True)
  assert not os.path.exists(tmp_path / "again")


def test_boundary_spread_at_model_resolution_maps_back_to_the_scan():
  h, w = 20, 4
  views = np.stack([one_hot_view([5, 5, 5, 5]), one_hot_view([5, 5, 9, 5])])[:, None]
  band = preprocessing.Placement(top=6, band_rows=h, width=w, height=40, model_rows=h,
                                 model_cols=w)
  sd = inference.boundary_spread_rows(views, [band])[0]
  restored = np.stack([preprocessing.restore(v[0], band) for v in views])
  np.testing.assert_array_equal(sd, uncertainty.boundary_uncertainty_um(restored, 1.0))
  np.testing.assert_allclose(sd[:, 2], 2.0)                       # population sd of 4 rows
  np.testing.assert_allclose(sd[:, [0, 1, 3]], 0)
  resized = dataclasses.replace(band, band_rows=2 * h, width=2 * w)   # band resized 2x
  sd2 = inference.boundary_spread_rows(views, [resized])[0]
  assert sd2.shape == (8, 2 * w)
  # raw columns sit at model columns -0.25, 0.25, ..., 3.25: the rows the views disagree by,
  # 4 model rows at column 2, interpolate to 0 0 0 1 3 3 1 0 and double in raw rows; the
  # population sd of two values is half their difference
  np.testing.assert_allclose(sd2, np.tile([0, 0, 0, 1, 3, 3, 1, 0], (8, 1)), atol=1e-12)


def test_boundary_spread_is_of_the_boundaries_smoothed_as_predict_writes_them():
  """With predict.smooth_sd_columns each view's boundaries are smoothed along the B-scan before
  their spread is taken. Two views 4 rows apart at the middle one of 17 columns differ, after a
  Gaussian of sd 2 columns (truncated at 4 sd: 8 columns each side), by 4 rows times the
  kernel's weight at each column's distance from it; the population sd of two values is half
  their difference. Unsmoothed, the spread is 2 rows there and 0 elsewhere."""
  w, c = 17, 8
  shifted = [5] * w
  shifted[c] = 9
  views = np.stack([one_hot_view([5] * w), one_hot_view(shifted)])[:, None]
  band = preprocessing.Placement(top=0, band_rows=20, width=w, height=20, model_rows=20,
                                 model_cols=w)
  kernel = np.exp(-np.arange(-8, 9) ** 2 / (2 * 2.0 ** 2))
  weights = kernel / kernel.sum()                                 # distance -8..8 -> 0..16
  np.testing.assert_allclose(inference.boundary_spread_rows(views, [band], 2.0)[0],
                             np.tile(2.0 * weights[np.arange(w) - c + 8], (8, 1)), rtol=1e-6)
  plain = inference.boundary_spread_rows(views, [band])[0]
  np.testing.assert_allclose(plain, np.tile(np.where(np.arange(w) == c, 2.0, 0.0), (8, 1)))


def test_an_ensembles_settings_apply_beneath_the_command_line(tmp_path, members):
  """ensemble.json's settings (inference fields the ensemble is used with: predict.*, and
  explain.*, e.g. its CAM method and layers) are set on every member's config, and on the
  config explain reads before loading; a --config override of the same field wins; bad
  settings are one line naming the file."""
  folder = tmp_path / "set"
  folder.mkdir()
  spec = {"members": members, "flip": False, "settings": {"predict.smooth_sd_columns": 4}}
  (folder / "ensemble.json").write_text(json.dumps(spec))
  ensemble = inference.load_trained(str(folder))
  assert [m.config.predict.smooth_sd_columns for m in ensemble.members] == [4, 4]
  assert ensemble.config.predict.smooth_sd_columns == 4
  one = inference.load_trained(str(folder), {"predict.members": 1})
  assert one.config.predict.smooth_sd_columns == 4
  off = inference.load_trained(str(folder), {"predict.smooth_sd_columns": 0.0})
  assert off.config.predict.smooth_sd_columns == 0.0
  path = str(folder / "ensemble.json")
  from octseg_jax.modes import explain
  assert explain.layers_source(str(folder), (), {}) == \
      f"explain.layers of {members[0]}/config.json (the first member's)"
  cam = {"explain.method": "gradcam", "explain.layers": ["dec0_conv1"]}   # explain's settings
  (folder / "ensemble.json").write_text(json.dumps(spec | {"settings": cam}))
  stored = inference.stored_config(str(folder))                 # what explain reads first
  assert (stored.explain.method, tuple(stored.explain.layers)) == ("gradcam", ("dec0_conv1",))
  assert inference.stored_config(str(folder), {"explain.method": "hirescam"}).explain.method \
      == "hirescam"
  assert explain.layers_source(str(folder), (), {}) == \
      f"explain.layers of {folder}/ensemble.json (its settings)"
  assert explain.layers_source(str(folder), ("head",), {}) == "--cam_layers"
  for settings, problem in (({"model.widths": [4, 8]}, "'model.widths' is not a setting"),
                            ({"explain.method": "nope"}, "explain.method='nope': "),
                            ({"explain.method": "ablation"}, "gradient-linear method only"),
                            ({"predict.members": 1}, "'predict.members' is not a setting"),
                            ({"train.eval_batch_size": 2}, "'train.eval_batch_size' is not a"),
                            ({"predict.smooth_sd_columns": -1}, "predict.smooth_sd_columns=-1: "),
                            ({"predict.smooth_sd_columns": 1e3}, "predict.smooth_sd_columns="),
                            ([1], "'settings' must be an object")):
    (folder / "ensemble.json").write_text(json.dumps(spec | {"settings": settings}))
    with pytest.raises(InputError) as e:
      inference.load_trained(str(folder))
    assert str(e.value).startswith(f"{path}: ") and problem in str(e.value)
    assert "\n" not in str(e.value)


def test_packaged_settings_are_stored_in_the_ensemble_file(tmp_path, members):
  script = load_script("eval_ensemble")
  assert script.ensemble_settings(["--config.explain.method=gradcam"]) == {
      "explain.method": "gradcam"}
  settings = script.ensemble_settings(["--config.predict.smooth_sd_columns=6"])
  assert settings == {"predict.smooth_sd_columns": 6.0}
  script.package(str(tmp_path / "pkg"), members, flip=False, settings=settings)
  spec = json.load(open(tmp_path / "pkg" / "ensemble.json"))
  assert spec["settings"] == {"predict.smooth_sd_columns": 6.0}
  assert inference.load_trained(str(tmp_path / "pkg")).config.predict.smooth_sd_columns == 6.0
  with pytest.raises(InputError, match="^--config: 'predict.members' is not a setting"):
    script.ensemble_settings(["--config.predict.members=1"])
  with pytest.raises(InputError, match="^--config: 'train.eval_batch_size' is not a setting"):
    script.ensemble_settings(["--config.train.eval_batch_size=2"])
  with pytest.raises(InputError, match="only --mode=eval"):
    script.ensemble_settings(["--config.data.duke_dir=x"])


def test_an_ensembles_uncertainty_is_scored_against_the_boundaries_predict_writes(tmp_path,
                                                                                 members):
  """With smoothing on, eval's rank correlation of the members' spread with the boundary error
  is uncertainty_vs_error of predict's written spread and (smoothed) boundaries, and eval counts
  the uncertain columns predict flags (its written spread over the threshold, in the columns
  its npz marks `supported`)."""
  from octseg_jax.geometry import boundaries as geom
  from octseg_jax.modes import evaluate, predict
  from octseg_jax.outputs.atomic import write_npz
  s = synthetic.generate(4, 100, 70, seed=3)
  write_npz(str(tmp_path / "scans.npz"), images=s.images, masks=s.masks)
  ensemble = _ensemble_dir(tmp_path, members, False)
  setting = {"predict.smooth_sd_columns": 6.0}
  predict.run(ensemble, str(tmp_path / "scans.npz"), str(tmp_path / "pred"), figures="none",
              overrides=setting)
  true = np.concatenate([geom.boundaries_from_labels(m) for m in s.masks], axis=-1)
  with np.load(tmp_path / "pred" / "scans.npz") as d:
    spread = np.concatenate(list(d["boundary_sd_um"]), axis=-1)
    written = np.concatenate(list(d["boundaries"]), axis=-1)
    supported = np.concatenate(list(d["supported"]))
  threshold = float(np.median(np.max(np.nan_to_num(spread, nan=-1.0), axis=0)[supported]))
  result = evaluate.run(ensemble, str(tmp_path / "scans.npz"), str(tmp_path / "eval"),
                        setting | {"predict.uncertain_um": threshold})
  flag = result["calibration"]["uncertain_columns"]       # predict's flag, same columns
  flagged = uncertainty.flag_columns(spread, threshold) & supported
  assert (flag["columns"], flag["flagged"]) == (supported.sum(), flagged.sum())
  assert 0 < flag["flagged"] < flag["columns"]
  want = uncertainty.uncertainty_vs_error(spread, written, true, 3.87)
  smoothed, unsmoothed = (inference.predict_outputs(inference.load_trained(ensemble, setting_),
                                                    s.images) for setting_ in (setting, None))
  plain = np.concatenate([geom.predicted_geometry(o["probs"], 0.0, False)[2]
                          for o in unsmoothed], axis=-1)
  assert not np.allclose(plain, written, equal_nan=True)        # smoothing moved them
  def spread_um(outputs):
    return np.concatenate([o["boundary_sd_rows"] for o in outputs], axis=-1) * 3.87
  np.testing.assert_allclose(spread, spread_um(smoothed), rtol=1e-6)
  assert not np.allclose(spread_um(unsmoothed), spread, equal_nan=True)
  got = result["calibration"]["uncertainty_vs_error"]["pooled"]
  assert got["pairs"] == want["pooled"]["pairs"] > 0
  assert got["rho"] == pytest.approx(want["pooled"]["rho"], rel=1e-6, nan_ok=True)
