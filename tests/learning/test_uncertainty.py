"""octseg_jax/learning/uncertainty.py on hand-made probabilities: closed forms and hand-computed cases."""

import numpy as np
import pytest
from scipy import stats

from octseg_jax.geometry import boundaries as geom
from octseg_jax.learning import uncertainty


def test_entropy_closed_forms():
  p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
  np.testing.assert_allclose(uncertainty.predictive_entropy(p), [0.0, np.log(2), np.log(3)])
  assert not np.signbit(uncertainty.predictive_entropy(p)[0])   # +0.0, not -0.0, if certain


def _column_probs(bounds, h=12, k=8):
  """One-hot [H, W, K] of ordered columns with boundary rows bounds [8, W]."""
  w = bounds.shape[1]
  labels = np.zeros((h, w), np.int64)
  rows = np.arange(h)[:, None]
  for b in range(7):
    labels[(rows >= bounds[b]) & (rows < bounds[b + 1])] = b + 1
  return np.eye(k)[labels]


def test_boundary_uncertainty_is_the_sd_of_member_boundaries_in_um():
  base = np.tile(np.arange(2, 10)[:, None], (1, 3))   # boundaries at rows 2..9, 3 columns
  moved = base.copy()
  moved[3, 1] += 1                                     # member 2: boundary 4 of column 1 lower
  views = np.stack([_column_probs(base), _column_probs(moved)])
  np.testing.assert_array_equal(geom.boundaries_from_probs(views[1]), moved)
  u = uncertainty.boundary_uncertainty_um(views, pixel_um=4.0)
  expected = np.zeros((8, 3))
  expected[3, 1] = 0.5 * 4.0                           # sd of {r, r+1} is 0.5 px
  np.testing.assert_allclose(u, expected, atol=1e-12)
  np.testing.assert_array_equal(uncertainty.flag_columns(u, 1.5), [False, True, False])
  np.testing.assert_array_equal(uncertainty.flag_columns(u, 2.0), [False, False, False])


def test_flag_columns_ignores_unknown_boundaries():
  u = np.array([[np.nan, 3.0], [1.0, np.nan]])
  np.testing.assert_array_equal(uncertainty.flag_columns(u, 2.0), [False, True])


def test_flag_rule_by_case():
  """Several views flag by their spread where its threshold is set (even where a position sd
  threshold is set too), else by the position sd; one view by its position sd only where that
  threshold is set."""
  assert uncertainty.flag_rule(True, 7.74, 9.0) == (uncertainty.SPREAD, 7.74)
  assert uncertainty.flag_rule(True, 7.74, 0.0) == (uncertainty.SPREAD, 7.74)
  assert uncertainty.flag_rule(True, 0.0, 9.0) == (uncertainty.POSITION_SD, 9.0)
  assert uncertainty.flag_rule(True, 0.0, 0.0) is None
  assert uncertainty.flag_rule(False, 7.74, 9.0) == (uncertainty.POSITION_SD, 9.0)
  assert uncertainty.flag_rule(False, 7.74, 0.0) is None


def test_reliability_by_hand():
  # 4 pixels: confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.6 (right); one IGNORE.
  probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.5, 0.5]])
  labels = np.array([0, 1, 1, 0, 255])
  r = uncertainty.reliability(probs, labels, num_bins=5)           # edges 0, .2, .4, .6, .8, 1
  assert r["count"] == [0, 0, 2, 0, 2] and r["pixels"] == 4    # 0.6 lies in (0.4, 0.6]
  np.testing.assert_allclose(r["mean_confidence"][2], 0.6)
  np.testing.assert_allclose(r["accuracy"][2], 1.0)
  np.testing.assert_allclose(r["accuracy"][4], 0.5)
  np.testing.assert_allclose(r["ece"], 0.5 * 0.4 + 0.5 * 0.4)
  assert np.isnan(r["accuracy"][0])


def test_reliability_of_calibrated_probabilities_is_near_zero():
  rng = np.random.default_rng(0)
  p1 = rng.uniform(0.5, 1.0, 200_000)
  labels = (rng.uniform(size=p1.size) >= p1).astype(int)      # class 0 with probability p1
  r = uncertainty.reliability(np.stack([p1, 1 - p1], -1), labels, num_bins=10)
  assert r["ece"] < 0.01


def test_merge_reliability_equals_reliability_of_the_union():
  rng = np.random.default_rng(1)
  p = rng.dirichlet(np.ones(3), size=500)
  labels = rng.integers(0, 3, 500)
  parts = [uncertainty.reliability(p[:200], labels[:200]), uncertainty.reliability(p[200:], labels[200:])]
  merged, whole = uncertainty.merge_reliability(parts), uncertainty.reliability(p, labels)
  assert merged["count"] == whole["count"]
  np.testing.assert_allclose(merged["ece"], whole["ece"], rtol=1e-12)
  np.testing.assert_allclose(merged["accuracy"], whole["accuracy"], rtol=1e-12)


def test_rank_correlation_by_hand_and_against_scipy():
  assert uncertainty.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40])["rho"] == pytest.approx(1)
  assert uncertainty.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1])["rho"] == pytest.approx(-1)
  # Ranks 1..5 vs 2,1,4,3,5: d^2 sum 4, rho = 1 - 6*4/(5*24) = 0.8; NaN pairs are dropped.
  r = uncertainty.rank_correlation([1, 2, 3, 4, 5, np.nan], [2, 1, 4, 3, 5, 0])
  assert r == {"rho": pytest.approx(0.8), "pairs": 5}
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=50), rng.integers(0, 5, 50)            # ties in b
  assert uncertainty.rank_correlation(a, b)["rho"] == pytest.approx(stats.spearmanr(a, b)[0])
  assert np.isnan(uncertainty.rank_correlation([1, 1, 1], [1, 2, 3])["rho"])
  assert np.isnan(uncertainty.rank_correlation([1, 2], [1, 2])["rho"])          # < 3 pairs


def test_spearman_against_scipy_with_ties_and_constant_sides():
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=300), rng.integers(0, 7, 300).astype(float)
  assert uncertainty.spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], rel=1e-12)
  assert uncertainty.spearman(a.reshape(10, 30), -a.reshape(10, 30)) == pytest.approx(-1.0)
  assert np.isnan(uncertainty.spearman(a, np.ones(300)))
  assert np.isnan(uncertainty.spearman(np.ones(300), b))


def test_flagged_columns_error_splits_the_error_by_the_uncertain_flag():
  """Hand-computed: 5 columns, errors 1, 1, 3, 5, 4 px at 2 um/px on every boundary known in
  both; column 3 unsupported, column 4 supported but its truth unknown (no error pairs);
  spreads over 7 um in columns 2, 3 and 4. Flagged: columns 2 and 4 (of 4 supported); MAE 6 um
  over column 2's pairs, 2 um in columns 0-1."""
  true = np.zeros((8, 5))
  pred = true + np.array([1.0, -1.0, 3.0, 5.0, 4.0])
  true[:, 4] = np.nan
  spread = np.tile([0.0, 6.9, 7.5, 20.0, 9.0], (8, 1))
  spread[0, 2] = np.nan                               # an unknown spread does not flag alone
  supported = np.array([True, True, True, False, True])
  out = uncertainty.flagged_columns_error(spread, pred, true, 2.0, 7.0, supported)
  assert out == {"threshold_um": 7.0, "columns": 4, "flagged": 2, "mae_flagged_um": 6.0,
                 "mae_unflagged_um": 2.0}
  none = uncertainty.flagged_columns_error(spread, pred, true, 2.0, 100.0, supported)
  assert none["flagged"] == 0 and np.isnan(none["mae_flagged_um"])
  assert none["mae_unflagged_um"] == pytest.approx((2 + 2 + 6) / 3)


def test_flag_curve_counts_by_hand():
  """flagged_columns_error's case at three thresholds, a column wrong beyond a mean error of
  5 um; read (flag_stats), pooled and its best threshold chosen by hand. Scored: columns 0-2
  (3 unsupported, 4 without truth), errors 2, 2, 6 um, column 1 with one boundary unknown (7
  pairs), column 0 with one boundary at 10 um (mean 3 um: not wrong); wrong: column 2.
  Spreads 0, 6.9, 7.5: 5 um flags columns 1-2, 7 um column 2, 8 um none."""
  true = np.zeros((8, 5))
  pred = true + np.array([1.0, -1.0, 3.0, 5.0, 4.0])
  true[:, 4] = np.nan
  true[5, 1] = np.nan
  pred[3, 0] = 5.0
  spread = np.tile([0.0, 6.9, 7.5, 20.0, 9.0], (8, 1))
  spread[0, 2] = np.nan
  supported = np.array([True, True, True, False, True])
  out = uncertainty.flag_curve(spread, pred, true, 2.0, supported, 5.0, (8.0, 5.0, 7.0, 5.0))
  assert out == {"wrong_um": 5.0, "thresholds_um": [5.0, 7.0, 8.0], "columns": 3, "wrong": 1,
                 "pairs": 23, "error_sum_um": 8 * 3 + 7 * 2 + 8 * 6.0,
                 "flagged": [2, 1, 0], "hits": [1, 1, 0], "flagged_pairs": [15, 8, 0],
                 "flagged_error_sum_um": [7 * 2 + 8 * 6.0, 8 * 6.0, 0.0]}
  # Read at each threshold, and pooled with itself (every count doubles, every ratio stays).
  for curve in (out, uncertainty.pool_curves([out, out])):
    at5, at7, at8 = (uncertainty.flag_stats(curve, i) for i in range(3))
    assert at5 == pytest.approx({"threshold_um": 5.0, "wrong_share": 1 / 3,
                                 "flagged_share": 2 / 3, "precision": 0.5,
                                 "recall": 1.0, "f1": 2 / 3, "mae_flagged_um": 62 / 15,
                                 "mae_unflagged_um": 3.0})
    assert at7 == pytest.approx({"threshold_um": 7.0, "wrong_share": 1 / 3,
                                 "flagged_share": 1 / 3, "precision": 1.0,
                                 "recall": 1.0, "f1": 1.0, "mae_flagged_um": 6.0,
                                 "mae_unflagged_um": 38 / 15})
    assert np.isnan(at8["precision"]) and np.isnan(at8["mae_flagged_um"])
    assert (at8["recall"], at8["f1"], at8["mae_unflagged_um"]) == (0.0, 0.0, 86 / 23)
    assert uncertainty.best_flag_index(curve) == 1
  assert uncertainty.pool_curves([out, out])["hits"] == [2, 2, 0]
  with pytest.raises(ValueError, match="different wrong_um cannot be pooled"):
    uncertainty.pool_curves([out, {**out, "wrong_um": 6.0}])
  # Curves pool at the thresholds they share: one more threshold (6 um) in the second is left
  # out; no shared threshold is refused.
  six = uncertainty.flag_curve(spread, pred, true, 2.0, supported, 5.0, (5.0, 6.0, 7.0, 8.0))
  both = uncertainty.pool_curves([out, six])
  assert both["thresholds_um"] == [5.0, 7.0, 8.0] and both["flagged"] == [4, 2, 0]
  assert both["flagged_error_sum_um"] == [2 * 62.0, 2 * 48.0, 0.0]
  with pytest.raises(ValueError, match="without a threshold in common"):
    uncertainty.pool_curves([out, {**six, "thresholds_um": [1.0, 2.0, 3.0, 4.0]}])
  default = uncertainty.flag_curve(spread, pred, true, 2.0, supported, 5.0)
  assert default["thresholds_um"] == [0.5 * k for k in range(1, 41)]
  assert default["flagged"] == [2] * 13 + [1] + [0] * 26             # 6.5, 7.0, 7.5 um


def test_uncertainty_vs_error_finds_the_uncertain_columns():
  true = np.zeros((8, 6))
  pred = true + np.array([0, 0, 1, 1, 2, 3])[None, :]          # error grows along the columns
  unc = np.tile(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), (8, 1))
  out = uncertainty.uncertainty_vs_error(unc, pred, true, pixel_um=3.0)
  assert out["per_boundary"][0]["rho"] == pytest.approx(
      stats.spearmanr(unc[0], [0, 0, 1, 1, 2, 3])[0])
  assert out["pooled"]["pairs"] == 48 and out["pooled"]["rho"] > 0.9


def test_top_share_error_splits_the_most_uncertain_pairs_by_hand():
  true = np.zeros((8, 5))
  pred = true + np.array([4.0, 0.0, 1.0, 0.0, 2.0])[None, :]         # error in rows
  unc = np.tile(np.array([9.0, 1.0, 5.0, 1.0, 3.0]), (8, 1))
  unc[0, 0] = np.nan                                                   # 39 pairs known
  out = uncertainty.top_share_error(unc, pred, true, pixel_um=2.0, share=0.2)
  # ceil(0.2 * 39) = 8 pairs: the 7 known of column 0 (error 8 um) and, by position, the
  # first of column 2 (uncertainty 5, error 2 um); the rest: 7 x 2 um, 16 x 0, 8 x 4 um.
  assert out["pairs"] == 39 and out["share"] == 0.2
  assert out["mae_top_um"] == pytest.approx((7 * 8 + 2) / 8)
  assert out["mae_rest_um"] == pytest.approx((7 * 2 + 8 * 4) / 31)
