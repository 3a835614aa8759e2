"""eval's split of the scores into the columns with grader-marked fluid and those without."""

import numpy as np
import pytest

from octseg_jax.anatomy import IGNORE
from octseg_jax.learning import scoring
from octseg_jax.modes import evaluate
from octseg_jax.outputs import report

H, W, UM = 20, 6, 3.87
TRUE_BOUNDS = [2, 4, 6, 8, 10, 12, 14, 16]    # layer k in rows [b_k, b_k+1), 2 rows each


def _label_map(bounds):
  """Label map [H, W] from one boundary list per column, bounds [8, W]."""
  rows = np.arange(H)[:, None]
  m = np.zeros((H, W), np.uint8)
  for k in range(7):
    m[(rows >= bounds[k]) & (rows < bounds[k + 1])] = k + 1
  return m


def _case():
  """Two scans. Scan 1 has fluid in columns 4-5, where the prediction puts OPL/ONL one row
  higher (row 9 instead of 10); elsewhere both scans are predicted exactly. Scan 2 has no
  fluid."""
  true_b = np.tile(np.array(TRUE_BOUNDS)[:, None], (1, W))
  pred_b = true_b.copy()
  pred_b[4, 4:] = 9
  fluid = np.zeros((H, W), np.uint8)
  fluid[10:12, 4:] = 1
  truth = _label_map(true_b)
  return ([_label_map(pred_b), truth], [truth, truth],
          [fluid, np.zeros((H, W), np.uint8)])


def test_fluid_columns_split_against_a_hand_computed_case():
  labels, masks, fluid = _case()
  out = scoring.score_fluid_columns(labels, masks, fluid, UM)
  dry, wet = out["without_fluid"], out["with_fluid"]
  assert (dry["columns"], wet["columns"]) == (4 + 6, 2)
  assert (dry["pixels"], wet["pixels"]) == (10 * H, 2 * H)
  assert dry["literature"]["layer_dice"] == pytest.approx([1.0] * 7)
  assert dry["geometry"]["mae_um"] == pytest.approx([0.0] * 8)
  # With fluid: OPL 4 true pixels, 2 predicted, 2 shared -> 4/6; ONL 4 true, 6 predicted,
  # 4 shared -> 8/10; every other layer exact.
  assert wet["literature"]["layer_dice"] == pytest.approx([1, 1, 1, 4 / 6, 0.8, 1, 1])
  assert wet["geometry"]["mae_um"] == pytest.approx([0, 0, 0, 0, UM, 0, 0, 0])
  assert wet["geometry"]["signed_um"] == pytest.approx([0, 0, 0, 0, -UM, 0, 0, 0])
  assert wet["geometry"]["thickness_mae_um"] == pytest.approx([0, 0, 0, UM, UM, 0, 0])


def test_a_boundary_through_unlabelled_fluid_is_not_scored():
  """A cyst across INL/OPL (row 8) in column 5, unlabelled in the mask as in the Duke data: the
  column counts as with fluid, its INL/OPL boundary is unknown there (not scored), and its two
  unlabelled pixels count in no Dice."""
  truth = _label_map(np.tile(np.array(TRUE_BOUNDS)[:, None], (1, W)))
  mask = truth.copy()
  mask[7:9, 5] = IGNORE
  fluid = np.zeros((H, W), np.uint8)
  fluid[7:9, 5] = 1
  wet = scoring.score_fluid_columns([truth], [mask], [fluid], UM)["with_fluid"]
  assert wet["columns"] == 1 and wet["pixels"] == H - 2
  assert wet["geometry"]["columns"] == [1, 1, 1, 0, 1, 1, 1, 1]
  assert np.isnan(wet["geometry"]["mae_um"][3]) and wet["geometry"]["mae_um"][4] == 0.0
  assert wet["literature"]["layer_dice"] == pytest.approx([1.0] * 7)


def test_score_adds_the_split_only_with_fluid_and_its_groups_add_up():
  labels, masks, fluid = _case()
  probs = [np.eye(8)[lab] for lab in labels]       # one-hot: the order fix keeps them
  with_split = scoring.score(probs, masks, [1, 2], UM, fluid=fluid)
  split = with_split["topology"]["by_fluid_columns"]
  assert split == scoring.score_fluid_columns(labels, masks, fluid, UM)
  assert split["without_fluid"]["pixels"] + split["with_fluid"]["pixels"] == \
      with_split["topology"]["pixels"]
  assert "by_fluid_columns" not in scoring.score(probs, masks, [1, 2], UM)["topology"]


def test_a_split_without_fluid_scores_an_empty_group_as_missing():
  labels, masks, _ = _case()
  out = scoring.score_fluid_columns(labels, masks, [np.zeros((H, W), np.uint8)] * 2, UM)
  assert out["with_fluid"]["columns"] == 0 and out["with_fluid"]["pixels"] == 0
  assert np.isnan(out["with_fluid"]["literature"]["mean_layer_dice"])
  assert out["without_fluid"]["columns"] == 2 * W
  md = "\n".join(report.fluid_columns_markdown(out))
  assert "12 columns without, 0 with" in md
  # OPL over all 12 columns: 24 true pixels, 22 predicted, 22 shared -> 44/46.
  assert "| OPL | 0.9565 | n/a |" in md
  assert "| OPL/ONL | 0.65 | -0.65 | 12 | n/a | n/a | 0 |" in md   # 2 of 12 columns one row high
  assert report.fluid_columns_markdown(None) == []
  assert report.fluid_columns_markdown(None, "1 of 2 scans carry no fluid annotation")[2] == (
      "Not scored: 1 of 2 scans carry no fluid annotation (the split needs every scan's).")


def test_eval_console_line_of_the_split():
  labels, masks, fluid = _case()
  out = scoring.score_fluid_columns(labels, masks, fluid, UM)
  # With fluid: Dice (1*5 + 4/6 + 0.8) / 7; boundary MAE 3.87 / 8 = 0.48 um.
  assert report.fluid_columns_summary(out) == [
      f"with fluid 2 columns: mean layer Dice {(5 + 4 / 6 + 0.8) / 7:.4f}, boundary MAE "
      "0.48 um; without 10 columns: mean layer Dice 1.0000, boundary MAE 0.00 um (order fix)"]
  assert report.fluid_columns_summary(None) == []


def test_eval_says_why_the_split_is_missing_when_only_some_scans_mark_fluid():
  import types
  labels, masks, fluid = _case()
  trained = types.SimpleNamespace(config=types.SimpleNamespace(
      predict=types.SimpleNamespace(smooth_sd_columns=0.0, uncertain_um=7.74,
                                    uncertain_position_sd_um=0.0)), head_names=())
  outputs = [{"probs": np.eye(8)[lab], "band": (0, H)} for lab in labels]
  partial = evaluate.score_outputs(trained, outputs, masks, [fluid[0], None], [1, 2], UM)
  assert "by_fluid_columns" not in partial["topology"]
  assert partial["topology"]["by_fluid_columns_skipped"] == \
      "1 of 2 scans carry no fluid annotation"
  for given in (fluid, [None, None]):            # every scan's, or none: nothing to explain
    assert "by_fluid_columns_skipped" not in evaluate.score_outputs(
        trained, outputs, masks, given, [1, 2], UM)["topology"]
  # A fluid head's Dice is skipped for the same reason, and says so.
  heads = scoring.score_heads([o | {"fluid": np.zeros((H, W))} for o in outputs], masks,
                               [fluid[0], None], [1, 2], None, UM)
  assert heads == {"fluid_skipped": "1 of 2 scans carry no fluid annotation"}
  assert "Not scored: 1 of 2 scans carry no fluid annotation (the fluid Dice needs every " \
      "scan's)." in report.heads_markdown(heads)


def test_eval_gives_the_calibration_error_of_the_band_apart():
  """Inside the band every pixel is right at confidence 0.6 (gap 0.4); outside it the output is
  certain, right background: ECE 0.4 over the band, 0.4 x 10/20 rows over all pixels."""
  probs = np.zeros((H, W, 8))
  probs[..., 0] = 1.0
  probs[5:15, :, 0], probs[5:15, :, 1:] = 0.6, 0.4 / 7
  outputs = [{"probs": probs, "band": (5, 15)}]
  cal = scoring.calibration(outputs, [np.zeros((H, W), np.uint8)], None, UM, None, None, 7.74)
  assert cal["ece"] == pytest.approx(0.2, rel=1e-12)
  assert cal["band"]["ece"] == pytest.approx(0.4, rel=1e-12)
  assert cal["band"]["pixels"] == 10 * W and cal["pixels"] == H * W


def test_eval_ranks_the_boundary_errors_by_the_position_sd_for_one_model():
  """One model (no members' spread): the position sd, here growing with the error along the
  columns, ranks the errors perfectly (rho 1); its top tenth of the 8 x W pairs is the last
  column's 8 pairs (error 6 rows), the rest average the other columns' errors; the report
  says both, and nothing about a members' spread."""
  probs = np.zeros((H, W, 8))
  probs[..., 0] = 1.0
  outputs = [{"probs": probs, "band": (0, H)}]
  true = np.zeros((8, W))
  pred = true + np.arange(W)[None, :] * 6.0 / (W - 1)           # error 0..6 rows
  sd = np.tile(np.arange(W, dtype=float), (8, 1))
  cal = scoring.calibration(outputs, [np.zeros((H, W), np.uint8)], true, UM, pred,
                            np.ones(W, bool), 7.74, sd)
  assert "uncertainty_vs_error" not in cal
  vs = cal["position_sd_vs_error"]
  assert vs["pooled"]["rho"] == pytest.approx(1.0) and vs["pooled"]["pairs"] == 8 * W
  top = int(np.ceil(0.1 * 8 * W))
  err = np.sort((pred - true).ravel() * UM)[::-1]
  assert vs["top_tenth"]["mae_top_um"] == pytest.approx(err[:top].mean())
  assert vs["top_tenth"]["mae_rest_um"] == pytest.approx(err[top:].mean())
  # A flag at 7.74 um on it: sd 3, 4, 5 rows (11.6-19.4 um) in columns 3-5, errors 3.6-6 rows.
  flag = cal["position_sd_columns"]
  assert (flag["flagged"], flag["columns"]) == (3, W) and "uncertain_columns" not in cal
  assert flag["mae_flagged_um"] == pytest.approx(4.8 * UM)
  assert flag["mae_unflagged_um"] == pytest.approx(1.2 * UM)
  text = "\n".join(report.calibration_markdown(cal))
  assert "position sd" in text and "members' boundary spread" not in text
  assert ("Columns a flag on the position sd would mark, which predict does not flag by (some "
          "boundary's position sd over 7.74 um): 3 of the 6 columns predict measures "
          "(`supported`), 50.0% of them") in text
  assert f"mean absolute error {report.fmt(err[:top].mean(), 2)} um" in text
  # Its curve: wrong beyond 7.74 um are columns 2-5 (errors 2.4-6 rows); at 8 um the flag is
  # the same 3 columns, all wrong.
  curve = cal["position_sd_columns_curve"]
  assert (curve["columns"], curve["wrong"], curve["wrong_um"]) == (W, 4, 7.74)
  at8 = curve["thresholds_um"].index(8.0)
  assert (curve["flagged"][at8], curve["hits"][at8]) == (3, 3)
  # With predict.uncertain_position_sd_um at 15 um predict flags this single model by it:
  # columns 4-5 (sd 4 and 5 rows, 15.5 and 19.4 um).
  cal = scoring.calibration(outputs, [np.zeros((H, W), np.uint8)], true, UM, pred,
                            np.ones(W, bool), 7.74, sd, 15.0)
  flag = cal["position_sd_columns"]
  assert (flag["flagged"], flag["threshold_um"], flag["predict_flags"]) == (2, 15.0, True)
  assert ("Columns predict flags `uncertain` (some boundary's position sd over 15 um): 2 of the"
          " 6 columns") in "\n".join(report.calibration_markdown(cal))


def test_eval_says_which_uncertainty_an_ensemble_flags_by():
  """An ensemble flags by its members' spread (predict.uncertain_um), or by the position sd
  where uncertain_um is 0 (uncertainty.flag_rule): eval's predict_flags and report follow, and
  the report gives no line for the spread's flag without a threshold.
  Spread 1 row in column 0 only (3.87 um); position sd 0..5 rows along the columns."""
  probs = np.zeros((H, W, 8))
  probs[..., 0] = 1.0
  spread = np.zeros((8, W))
  spread[2, 0] = 1.0
  outputs = [{"probs": probs, "band": (0, H), "boundary_sd_rows": spread}]
  true = np.zeros((8, W))
  pred = true + np.arange(W)[None, :] * 6.0 / (W - 1)
  sd = np.tile(np.arange(W, dtype=float), (8, 1))
  args = (outputs, [np.zeros((H, W), np.uint8)], true, UM, pred, np.ones(W, bool))
  by_spread = scoring.calibration(*args, 2.0, sd, 15.0)
  assert by_spread["uncertain_columns"]["predict_flags"] is True
  assert by_spread["uncertain_columns"]["flagged"] == 1
  assert by_spread["position_sd_columns"]["predict_flags"] is False
  by_position = scoring.calibration(*args, 0.0, sd, 15.0)
  assert by_position["uncertain_columns"]["predict_flags"] is False
  assert by_position["position_sd_columns"]["predict_flags"] is True
  assert by_position["position_sd_columns"]["flagged"] == 2          # sd 4 and 5 rows
  text = "\n".join(report.calibration_markdown(by_position))
  assert ("Columns predict flags `uncertain` (some boundary's position sd over 15 um): 2 of "
          "the 6 columns") in text
  assert "flag on the members' spread" not in text and "over 0 um" not in text   # no threshold
  assert ("Columns predict flags `uncertain` (some boundary's members' spread over 2 um): 1 of "
          "the 6 columns") in "\n".join(report.calibration_markdown(by_spread))
