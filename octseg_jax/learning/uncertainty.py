"""How sure a prediction is, and whether that finds its errors (pure numpy, float64): per-pixel
entropy, the spread of boundaries between views, calibration (reliability, ECE), and the rank
correlation of uncertainty with the boundary error.

A "view" is one set of class probabilities of a scan, [H, W, K]; `views` stacks the views of
one scan, [V, H, W, K] (ensemble members, each optionally also on the mirrored scan; see
serving/inference.py). Entropies are in nats. Boundaries follow geometry/boundaries.py ([8, W]
rows, NaN where unknown).
"""

from typing import Dict, Sequence

import numpy as np
from scipy import stats

from octseg_jax.anatomy import IGNORE, NUM_BOUNDARIES
from octseg_jax.data.scans import SPECTRALIS_ROW_UM
from octseg_jax.geometry import boundaries as geom


def predictive_entropy(probs: np.ndarray) -> np.ndarray:
  """[..., K] -> [...]: -sum_k p_k log p_k (0 log 0 = 0); 0 for one-hot, log K for uniform."""
  p = np.asarray(probs, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):                # 0.0 - x: no -0.0
    return 0.0 - np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)


def boundary_uncertainty_um(views: np.ndarray, pixel_um: float) -> np.ndarray:
  """[V, H, W, K] -> [8, W]: population sd over views of each view's sub-pixel boundary row
  (geometry.boundaries.boundaries_from_probs), in micrometres; NaN where a view lacks the boundary.
  Needs V >= 2 views (else every column is 0)."""
  bounds = np.stack([geom.boundaries_from_probs(v) for v in np.asarray(views)])   # [V, 8, W]
  return np.std(bounds, axis=0) * pixel_um


def flag_columns(uncertainty_um: np.ndarray, threshold_um: float) -> np.ndarray:
  """[8, W] -> [W] bool: columns where some known boundary's uncertainty exceeds the threshold."""
  u = np.asarray(uncertainty_um, np.float64)
  return np.any(np.where(np.isfinite(u), u, -np.inf) > threshold_um, axis=-2)


SPREAD, POSITION_SD = "spread", "position_sd"    # the uncertainties a column flag may use


def flag_rule(several_views: bool, uncertain_um: float, position_sd_um: float):
  """What flags a column `uncertain`, as (uncertainty, threshold um), or None: several views
  (an ensemble) flag by their spread of some boundary over uncertain_um where that is set
  (> 0); otherwise, and for one view, some boundary's position sd over position_sd_um where
  that is set (> 0). The one home of the rule: predict's column flag and eval's calibration
  both follow it."""
  if several_views and uncertain_um:
    return SPREAD, float(uncertain_um)
  return (POSITION_SD, float(position_sd_um)) if position_sd_um else None


def reliability(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> Dict:
  """Reliability diagram data and expected calibration error of the top-class confidence.

  probs [..., K], labels [...] (IGNORE and labels >= K do not count). Confidence c = max_k p_k
  falls in bin b when edges[b] < c <= edges[b + 1] (edges 0, 1/B, ..., 1). ECE = sum over bins
  of (count_b / N) * |accuracy_b - mean confidence_b|. Empty bins have NaN means.
  """
  p = np.asarray(probs, np.float64)
  labels = np.asarray(labels)
  valid = (labels != IGNORE) & (labels < p.shape[-1])
  conf = p.max(axis=-1)[valid]
  correct = (np.argmax(p, axis=-1) == labels)[valid]
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, num_bins - 1)
  count = np.bincount(bins, minlength=num_bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_conf = np.bincount(bins, conf, num_bins) / count
    accuracy = np.bincount(bins, correct.astype(np.float64), num_bins) / count
  gaps = np.where(count > 0, np.abs(accuracy - mean_conf), 0.0)
  return {"edges": edges.tolist(), "count": count.tolist(),
          "mean_confidence": mean_conf.tolist(), "accuracy": accuracy.tolist(),
          "ece": float(np.sum(count / max(count.sum(), 1) * gaps)), "pixels": int(count.sum())}


def merge_reliability(parts: Sequence[Dict]) -> Dict:
  """The reliability of several parts (e.g. scans) from their bin counts and means."""
  count = np.sum([p["count"] for p in parts], axis=0).astype(np.float64)
  def pooled(key):
    return np.nansum([np.nan_to_num(np.asarray(p[key], np.float64)) * np.asarray(p["count"])
                      for p in parts], axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_conf, accuracy = pooled("mean_confidence") / count, pooled("accuracy") / count
  gaps = np.where(count > 0, np.abs(accuracy - mean_conf), 0.0)
  return {"edges": parts[0]["edges"], "count": count.astype(int).tolist(),
          "mean_confidence": mean_conf.tolist(), "accuracy": accuracy.tolist(),
          "ece": float(np.sum(count / max(count.sum(), 1) * gaps)), "pixels": int(count.sum())}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman's rho of two equal-size arrays (flattened): the Pearson correlation of their
  ranks, ties sharing their average rank, in float64. NaN when either side is constant."""
  a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
  if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
    return float("nan")
  ra, rb = stats.rankdata(a), stats.rankdata(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  return float(np.dot(ra, rb) / np.sqrt(np.dot(ra, ra) * np.dot(rb, rb)))


def rank_correlation(a: np.ndarray, b: np.ndarray) -> Dict:
  """spearman over the pairs where both are finite, with their count; rho is NaN with fewer
  than 3 pairs or a constant side."""
  a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
  keep = np.isfinite(a) & np.isfinite(b)
  n = int(keep.sum())
  return {"rho": spearman(a[keep], b[keep]) if n >= 3 else float("nan"), "pairs": n}


def boundary_error_um(pred_bounds: np.ndarray, true_bounds: np.ndarray,
                      pixel_um: float) -> np.ndarray:
  """[8, W] absolute boundary error in um (NaN where either boundary is unknown), float64."""
  error = np.abs(np.asarray(pred_bounds, np.float64) - np.asarray(true_bounds, np.float64))
  return error * pixel_um


def uncertainty_vs_error(uncertainty_um: np.ndarray, pred_bounds: np.ndarray,
                         true_bounds: np.ndarray, pixel_um: float) -> Dict:
  """Rank correlation between boundary uncertainty and absolute boundary error (both in um),
  per boundary (8 entries) and over all boundaries pooled. Arrays [8, W] (W may be several
  scans' columns concatenated)."""
  err = boundary_error_um(pred_bounds, true_bounds, pixel_um)
  return {"per_boundary": [rank_correlation(uncertainty_um[k], err[k])
                           for k in range(NUM_BOUNDARIES)],
          "pooled": rank_correlation(uncertainty_um, err)}


def top_share_error(uncertainty_um: np.ndarray, pred_bounds: np.ndarray,
                    true_bounds: np.ndarray, pixel_um: float, share: float = 0.1) -> Dict:
  """Whether an uncertainty finds the large boundary errors: over the (boundary, column) pairs
  where the uncertainty and the error (boundary_error_um) are both known, the mean absolute
  error of the `share` with the highest uncertainty (ties broken by position, so exactly
  ceil(share * pairs) of them) against that of the others. Arrays [8, W] as in
  uncertainty_vs_error; NaN means where a part is empty."""
  u = np.ravel(np.asarray(uncertainty_um, np.float64))
  err = np.ravel(boundary_error_um(pred_bounds, true_bounds, pixel_um))
  keep = np.isfinite(u) & np.isfinite(err)
  u, err = u[keep], err[keep]
  top = np.zeros(u.size, bool)
  top[np.argsort(-u, kind="stable")[:int(np.ceil(share * u.size))]] = True
  def mae(part):
    return float(err[part].mean()) if part.any() else float("nan")
  return {"share": float(share), "pairs": int(u.size), "mae_top_um": mae(top),
          "mae_rest_um": mae(~top)}


def flagged_columns_error(uncertainty_um: np.ndarray, pred_bounds: np.ndarray,
                          true_bounds: np.ndarray, pixel_um: float, threshold_um: float,
                          supported: np.ndarray) -> Dict:
  """How the 'uncertain' flag splits the boundary error, on the columns predict flags:
  `supported` [W] (geometry.supported_columns), flagged where flag_columns at threshold_um is.
  Arrays [8, W] as in uncertainty_vs_error. Counts the supported columns and the flagged ones
  among them, and gives the mean absolute boundary error (um; boundary_error_um) of the flagged
  and of the other supported columns, over their (boundary, column) pairs where both the
  predicted and the true boundary are known (NaN where there are none)."""
  err = boundary_error_um(pred_bounds, true_bounds, pixel_um)
  supported = np.asarray(supported, bool)
  flagged = flag_columns(uncertainty_um, threshold_um) & supported
  def mae(columns):
    e = err[:, columns]
    e = e[np.isfinite(e)]
    return float(e.mean()) if e.size else float("nan")
  return {"threshold_um": float(threshold_um), "columns": int(supported.sum()),
          "flagged": int(flagged.sum()), "mae_flagged_um": mae(flagged),
          "mae_unflagged_um": mae(supported & ~flagged)}


FLAG_CURVE_UM = tuple(round(0.5 * k, 1) for k in range(1, 41))   # thresholds 0.5 .. 20 um
WRONG_UM = 2 * SPECTRALIS_ROW_UM   # a column's mean boundary error that a flag should find


def flag_curve(uncertainty_um: np.ndarray, pred_bounds: np.ndarray, true_bounds: np.ndarray,
               pixel_um: float, supported: np.ndarray, wrong_um: float,
               thresholds_um: Sequence[float] = FLAG_CURVE_UM) -> Dict:
  """What a column flag would find at each threshold, as counts that add over scans and folds
  (a threshold is then chosen on some folds and checked on another: scripts/flag_threshold_cv),
  at the thresholds given (sorted, each once). Over the supported columns [W] with some
  boundary whose predicted and true rows are both known (`scored`), a column is `wrong` where
  the mean error (boundary_error_um) of those boundaries exceeds wrong_um (a mean, not the
  largest: on Duke's held-out eyes some boundary of most columns is off by over 2 pixels); at
  each threshold a column is flagged as flag_columns flags it. Gives per threshold the flagged
  columns, the wrong ones among them (`hits`), and their summed boundary error and (boundary,
  column) pairs, beside the totals. Arrays [8, W] as in uncertainty_vs_error."""
  err = boundary_error_um(pred_bounds, true_bounds, pixel_um)
  known = np.isfinite(err)
  scored = np.asarray(supported, bool) & known.any(axis=0)
  err, known = err[:, scored], known[:, scored]
  pairs, err_sum = known.sum(axis=0), np.where(known, err, 0.0).sum(axis=0)
  wrong = err_sum / pairs > wrong_um
  u = np.asarray(uncertainty_um, np.float64)[:, scored]
  thresholds_um = sorted({float(t) for t in thresholds_um})
  flagged = np.stack([flag_columns(u, t) for t in thresholds_um])          # [T, scored]
  return {"wrong_um": float(wrong_um), "thresholds_um": [float(t) for t in thresholds_um],
          "columns": int(scored.sum()), "wrong": int(wrong.sum()),
          "pairs": int(pairs.sum()), "error_sum_um": float(err_sum.sum()),
          "flagged": flagged.sum(axis=1).tolist(), "hits": (flagged & wrong).sum(axis=1).tolist(),
          "flagged_pairs": (flagged * pairs).sum(axis=1).tolist(),
          "flagged_error_sum_um": (flagged * err_sum).sum(axis=1).tolist()}


def pool_curves(curves: Sequence[Dict]) -> Dict:
  """The flag_curve of several parts (folds) from their counts, at the thresholds they all
  have (each eval adds its own flag's threshold to FLAG_CURVE_UM); ValueError where their
  wrong_um differ or they share no threshold."""
  if len({c["wrong_um"] for c in curves}) > 1:
    raise ValueError("flag curves with different wrong_um cannot be pooled")
  shared = sorted(set.intersection(*(set(c["thresholds_um"]) for c in curves)))
  if not shared:
    raise ValueError("flag curves without a threshold in common cannot be pooled")
  out = {"wrong_um": curves[0]["wrong_um"], "thresholds_um": shared}
  for key in ("columns", "wrong", "pairs", "error_sum_um"):
    out[key] = sum(c[key] for c in curves)
  at = [[c["thresholds_um"].index(t) for t in shared] for c in curves]
  for key in ("flagged", "hits", "flagged_pairs", "flagged_error_sum_um"):
    out[key] = np.sum([np.asarray(c[key])[i] for c, i in zip(curves, at)], axis=0).tolist()
  return out


def flag_stats(curve: Dict, index: int) -> Dict:
  """A flag_curve read at its threshold `index`: the share of the columns wrong (at any
  threshold) and flagged, precision (wrong among the flagged), recall (flagged among the
  wrong), F1 (their harmonic mean, 2 hits / (flagged + wrong)) and the mean absolute boundary
  error of the flagged and the other columns' pairs (um). NaN where a ratio has no
  denominator."""
  def ratio(a, b):
    return float(a / b) if b else float("nan")
  flagged, hits = curve["flagged"][index], curve["hits"][index]
  pairs, err = curve["flagged_pairs"][index], curve["flagged_error_sum_um"][index]
  return {"threshold_um": float(curve["thresholds_um"][index]),
          "wrong_share": ratio(curve["wrong"], curve["columns"]),
          "flagged_share": ratio(flagged, curve["columns"]), "precision": ratio(hits, flagged),
          "recall": ratio(hits, curve["wrong"]), "f1": ratio(2 * hits, flagged + curve["wrong"]),
          "mae_flagged_um": ratio(err, pairs),
          "mae_unflagged_um": ratio(curve["error_sum_um"] - err, curve["pairs"] - pairs)}


def best_flag_index(curve: Dict) -> int:
  """The threshold index of a flag_curve with the highest F1 (flag_stats); the lowest such
  threshold on a tie."""
  f1 = [flag_stats(curve, i)["f1"] for i in range(len(curve["thresholds_um"]))]
  return int(np.argmax(np.nan_to_num(f1, nan=-1.0)))
