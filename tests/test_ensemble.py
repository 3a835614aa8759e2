"""octseg_jax/serving/ensemble.py on hand-made probabilities: closed forms and hand-computed cases."""

import os
import types

import numpy as np
import pytest
from scipy import stats

from octseg_jax.serving import ensemble
from octseg_jax.geometry import boundaries as geom
def test_flip_views_of_a_mirror_symmetric_model_agree():
  def probs_fn(x):                                    # column-wise, hence flip-equivariant
    return np.stack([x, 1 - x], axis=-1)
  x = np.random.default_rng(0).uniform(size=(2, 3, 5))
  views = ensemble.flip_views(probs_fn, x)
  assert views.shape == (2, 2, 3, 5, 2)
  np.testing.assert_array_equal(views[0], views[1])


def test_flip_views_undo_the_mirror_of_a_position_dependent_model():
  def probs_fn(x):                                    # p(class 0) = column / (W - 1)
    c = np.broadcast_to(np.linspace(0, 1, x.shape[-1]), x.shape)
    return np.stack([c, 1 - c], axis=-1)
  views = ensemble.flip_views(probs_fn, np.zeros((3, 4)))
  np.testing.assert_allclose(views[1][..., 0], 1 - views[0][..., 0])
  np.testing.assert_allclose(ensemble.mean_probs(views), 0.5)


def test_entropy_closed_forms():
  p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
  np.testing.assert_allclose(ensemble.predictive_entropy(p), [0.0, np.log(2), np.log(3)])


def test_mutual_information_and_disagreement_by_hand():
  a, b = np.array([0.9, 0.1]), np.array([0.1, 0.9])
  views = np.stack([a, b])                            # two confident members that disagree
  h = lambda p: -np.sum(p * np.log(p))
  np.testing.assert_allclose(ensemble.mutual_information(views), np.log(2) - h(a))
  same = np.stack([a, a])
  np.testing.assert_allclose(ensemble.mutual_information(same), 0.0, atol=1e-12)
  three = np.stack([a, a, b])                         # mean argmax is class 0; one of 3 differs
  np.testing.assert_allclose(ensemble.disagreement_rate(three), 1 / 3)
  np.testing.assert_allclose(ensemble.disagreement_rate(same), 0.0)


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
  u = ensemble.boundary_uncertainty_um(views, pixel_um=4.0)
  expected = np.zeros((8, 3))
  expected[3, 1] = 0.5 * 4.0                           # sd of {r, r+1} is 0.5 px
  np.testing.assert_allclose(u, expected, atol=1e-12)
  np.testing.assert_array_equal(ensemble.flag_columns(u, 1.5), [False, True, False])
  np.testing.assert_array_equal(ensemble.flag_columns(u, 2.0), [False, False, False])


def test_flag_columns_ignores_unknown_boundaries():
  u = np.array([[np.nan, 3.0], [1.0, np.nan]])
  np.testing.assert_array_equal(ensemble.flag_columns(u, 2.0), [False, True])


def test_reliability_by_hand():
  # 4 pixels: confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.6 (right); one IGNORE.
  probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.5, 0.5]])
  labels = np.array([0, 1, 1, 0, 255])
  r = ensemble.reliability(probs, labels, num_bins=5)           # edges 0, .2, .4, .6, .8, 1
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
  r = ensemble.reliability(np.stack([p1, 1 - p1], -1), labels, num_bins=10)
  assert r["ece"] < 0.01


def test_merge_reliability_equals_reliability_of_the_union():
  rng = np.random.default_rng(1)
  p = rng.dirichlet(np.ones(3), size=500)
  labels = rng.integers(0, 3, 500)
  parts = [ensemble.reliability(p[:200], labels[:200]), ensemble.reliability(p[200:], labels[200:])]
  merged, whole = ensemble.merge_reliability(parts), ensemble.reliability(p, labels)
  assert merged["count"] == whole["count"]
  np.testing.assert_allclose(merged["ece"], whole["ece"], rtol=1e-12)
  np.testing.assert_allclose(merged["accuracy"], whole["accuracy"], rtol=1e-12)


def test_rank_correlation_by_hand_and_against_scipy():
  assert ensemble.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40])["rho"] == pytest.approx(1)
  assert ensemble.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1])["rho"] == pytest.approx(-1)
  # Ranks 1..5 vs 2,1,4,3,5: d^2 sum 4, rho = 1 - 6*4/(5*24) = 0.8; NaN pairs are dropped.
  r = ensemble.rank_correlation([1, 2, 3, 4, 5, np.nan], [2, 1, 4, 3, 5, 0])
  assert r == {"rho": pytest.approx(0.8), "pairs": 5}
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=50), rng.integers(0, 5, 50)            # ties in b
  assert ensemble.rank_correlation(a, b)["rho"] == pytest.approx(stats.spearmanr(a, b)[0])
  assert np.isnan(ensemble.rank_correlation([1, 1, 1], [1, 2, 3])["rho"])


def test_uncertainty_vs_error_finds_the_uncertain_columns():
  true = np.zeros((8, 6))
  pred = true + np.array([0, 0, 1, 1, 2, 3])[None, :]          # error grows along the columns
  unc = np.tile(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), (8, 1))
  out = ensemble.uncertainty_vs_error(unc, pred, true, pixel_um=3.0)
  assert out["per_boundary"][0]["rho"] == pytest.approx(
      stats.spearmanr(unc[0], [0, 0, 1, 1, 2, 3])[0])
  assert out["pooled"]["pairs"] == 48 and out["pooled"]["rho"] > 0.9


def test_ensemble_of_one_model_twice_equals_eval_and_has_no_disagreement(trained_workdir, tmp_path):
  from octseg_jax.modes import evaluate
  workdir, _ = trained_workdir
  single = evaluate.score(*_probs_masks_subjects(workdir))
  r = ensemble.evaluate_ensemble([workdir, workdir], str(tmp_path), flip=False)
  assert r["views_per_scan"] == 2
  assert r["raw"]["literature"] == single["raw"]["literature"]
  assert r["uncertainty"]["mean_mutual_information"] == pytest.approx(0.0, abs=1e-9)
  assert r["uncertainty"]["flagged_columns"] == 0
  assert np.nanmax(r["uncertainty"]["boundary_uncertainty_um_mean"]) == pytest.approx(0.0)
  assert r["calibration"]["pixels"] == sum(r["calibration"]["count"]) > 0
  assert os.path.exists(os.path.join(tmp_path, "ensemble_metrics.json"))
  flipped = ensemble.evaluate_ensemble([workdir], str(tmp_path / "flip"), flip=True)
  assert flipped["views_per_scan"] == 2 and flipped["flip"]
  assert flipped["uncertainty"]["mean_mutual_information"] >= 0.0


def _probs_masks_subjects(workdir):
  from octseg_jax.modes import evaluate
  from octseg_jax.serving.inference import load_trained, predict_probs
  trained = load_trained(workdir)
  images, masks, _, subjects, _ = evaluate.validation_scans(trained)
  return predict_probs(trained, images), masks, subjects, float(trained.config.data.pixel_um)


def test_members_with_different_validation_splits_are_refused():
  from octseg_jax.errors import InputError
  a = types.SimpleNamespace(split={"val": {"names": ["s1"]}}, workdir="a")
  b = types.SimpleNamespace(split={"val": {"names": ["s2"]}}, workdir="b")
  with pytest.raises(InputError, match="b/split.json"):
    ensemble.check_common_validation([a, b])
