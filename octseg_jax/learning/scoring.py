"""Scoring at native resolution, pure math shared by --mode=eval and the campaign's scripts:
both metric protocols (learning.metrics), boundary and thickness error, the topology-fixed
labels split by columns with and without fluid, the optional heads (fluid, boundary head) and
calibration with the ensemble's uncertainty against its error."""

from typing import Dict, List, Optional

import numpy as np

from octseg_jax.anatomy import FLUID_THRESHOLD, IGNORE, NUM_CLASSES, NUM_LAYERS
from octseg_jax.data import preprocessing
from octseg_jax.geometry import boundaries as geom
from octseg_jax.learning import metrics, uncertainty


def _geometry_errors(pred_bounds, true_bounds, pixel_um) -> Dict:
  err = geom.boundary_error(pred_bounds, true_bounds, pixel_um)
  t_err = np.abs(np.diff(pred_bounds, axis=-2) - np.diff(true_bounds, axis=-2)) * pixel_um
  t_err = np.moveaxis(t_err, -2, 0).reshape(NUM_LAYERS, -1)
  thick = metrics.nanmean(np.where(np.isfinite(t_err), t_err, np.nan), axis=1)
  return {k: v.tolist() for k, v in err.items()} | {"thickness_mae_um": thick.tolist()}


def score(probs: List[np.ndarray], masks: List[np.ndarray], subjects, pixel_um: float,
          progress=None, fluid=None, smooth_sd: float = 0.0, geometry=None) -> Dict:
  """Both metric protocols and boundary/thickness errors for raw argmax and topology-fixed
  predictions. probs: float [H, W, K] per scan (sizes may differ); masks: uint8 [H, W].
  progress: optional Progress, updated once per scan. fluid: the grader's fluid masks [H, W]
  per scan, or None: with them, the topology-fixed scores also split by fluid_columns.
  smooth_sd: the topology-fixed labels and the sub-pixel boundaries smoothed along the B-scan
  (sd in columns; predict.smooth_sd_columns): geometry.predicted_geometry, as predict writes
  them. geometry: that function's result per scan, when the caller already has it (computed
  here otherwise)."""
  cm_raw = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
  cm_fix = np.zeros_like(cm_raw)
  soft = 0.0
  fixed_cols = total_cols = 0
  bounds = {"true": [], "argmax": [], "topology": [], "subpixel": []}
  per_subject: Dict[int, np.ndarray] = {}
  fixed_labels = []
  for i, (p, m, subj) in enumerate(zip(probs, masks, subjects)):
    pred = np.argmax(p, axis=-1).astype(np.uint8)
    fixed, changed, subpixel = (geometry[i] if geometry is not None
                                else geom.predicted_geometry(p, smooth_sd))
    if fluid is not None:
      fixed_labels.append(fixed)
    fixed_cols += int(changed.sum())
    total_cols += changed.size
    cm = np.asarray(metrics.confusion_matrix(m, pred, NUM_CLASSES), np.int64)
    cm_raw += cm
    cm_fix += np.asarray(metrics.confusion_matrix(m, fixed, NUM_CLASSES), np.int64)
    per_subject[int(subj)] = per_subject.get(int(subj), 0) + cm
    valid = (m != IGNORE) & (m < NUM_CLASSES)
    soft += float(np.take_along_axis(p, np.where(valid, m, 0)[..., None].astype(int),
                                     -1)[..., 0][valid].sum())
    bounds["true"].append(geom.boundaries_from_labels(m))
    bounds["argmax"].append(geom.boundaries_from_labels(pred))
    bounds["topology"].append(geom.boundaries_from_labels(fixed))
    bounds["subpixel"].append(subpixel)
    if progress is not None:
      progress.update()
  cat = {k: np.concatenate(v, axis=-1) for k, v in bounds.items()}   # [8, sum W]
  raw = metrics.summarise(cm_raw, soft)
  raw["geometry"] = _geometry_errors(cat["argmax"], cat["true"], pixel_um)
  raw["geometry_subpixel"] = _geometry_errors(cat["subpixel"], cat["true"], pixel_um)
  fix = metrics.summarise(cm_fix)
  fix["geometry"] = _geometry_errors(cat["topology"], cat["true"], pixel_um)
  fix["columns_fixed"] = fixed_cols
  fix["columns_total"] = total_cols
  fix["smooth_sd_columns"] = float(smooth_sd)
  if fluid is not None:
    fix["by_fluid_columns"] = score_fluid_columns(fixed_labels, masks, fluid, pixel_um)
  return {
      "scans": len(probs),
      "resolution": "native (each scan's own size; recipe undone)",
      "pixel_um": pixel_um,
      "raw": raw,
      "topology": fix,
      "per_subject_mean_layer_dice": {
          s: metrics.summarise(cm)["literature"]["mean_layer_dice"]
          for s, cm in sorted(per_subject.items())},
  }


def partly_unknown_fluid(fluid) -> str:
  """'K of N scans carry no fluid annotation' when some but not all of the fluid masks are None
  (the scores that need every scan's are then skipped, and say so), else ''."""
  unknown = sum(f is None for f in fluid)
  if 0 < unknown < len(fluid):
    return f"{unknown} of {len(fluid)} scans carry no fluid annotation"
  return ""


def score_fluid_columns(labels, masks, fluid, pixel_um: float) -> Dict:
  """Layer Dice (literature protocol) and boundary error of label maps [H, W] per scan, scored
  apart in the columns with grader-marked fluid and in those without
  (preprocessing.fluid_columns). A group with no column has NaN scores and 0 columns."""
  out = {}
  for group, wet in (("without_fluid", False), ("with_fluid", True)):
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    pred, true = [], []
    for lab, m, f in zip(labels, masks, fluid):
      cols = preprocessing.fluid_columns(f) == wet
      cm += np.asarray(metrics.confusion_matrix(m[:, cols], lab[:, cols], NUM_CLASSES), np.int64)
      pred.append(geom.boundaries_from_labels(lab[:, cols]))
      true.append(geom.boundaries_from_labels(m[:, cols]))
    summary = metrics.summarise(cm)
    out[group] = {"columns": int(sum(p.shape[-1] for p in pred)), "pixels": summary["pixels"],
                  "literature": summary["literature"],
                  "geometry": _geometry_errors(np.concatenate(pred, axis=-1),
                                               np.concatenate(true, axis=-1), pixel_um)}
  return out


def score_fluid(fluid_probs, fluid_true, masks, subjects) -> Dict:
  """Fluid Dice counted globally (over the split, per subject, over the scans with fluid) and
  the absolute fluid-area error per scan, from fluid probabilities [H, W] thresholded at
  FLUID_THRESHOLD.
  Pixels count where the fluid state is known: labelled (mask != 255) or marked fluid."""
  counts = []
  for p, f, m in zip(fluid_probs, fluid_true, masks):
    known = (m != IGNORE) | (f > 0)
    pred, true = (p > FLUID_THRESHOLD) & known, (f > 0) & known
    counts.append((np.sum(pred & true), np.sum(pred & ~true), np.sum(~pred & true),
                   np.sum(pred), np.sum(true)))
  c = np.asarray(counts, np.float64).reshape(-1, 5)             # tp, fp, fn, pred, true

  def dice(rows):
    return metrics.dice_of_counts(*c[rows, :3].sum(axis=0))

  subjects = np.asarray(subjects)
  area_err = np.abs(c[:, 3] - c[:, 4])
  return {"dice": dice(slice(None)),
          "dice_scans_with_fluid": dice(c[:, 4] > 0),
          "scans_with_fluid": int((c[:, 4] > 0).sum()),
          "per_subject_dice": {int(s): dice(subjects == s) for s in sorted(set(subjects.tolist()))},
          "area_abs_error_px": {"mean": float(area_err.mean()), "per_scan": area_err.tolist()},
          "area_true_px": c[:, 4].tolist(), "area_pred_px": c[:, 3].tolist(),
          "counted": "globally over the pixels of all scans (not a mean of per-scan Dice)"}


def score_heads(outputs: List[Dict], masks, fluid_true, subjects, true_bounds,
                pixel_um: float) -> Dict:
  """The optional heads' numbers: fluid (when the scans carry a fluid annotation) and the
  boundary head's boundary error against the masks' boundaries (no topology fix needed: the
  head's boundaries are ordered by construction). true_bounds: the masks' boundaries [8, sum W]."""
  out = {}
  if "fluid" in outputs[0] and all(f is not None for f in fluid_true):
    out["fluid"] = score_fluid([o["fluid"] for o in outputs], fluid_true, masks, subjects)
  elif "fluid" in outputs[0] and partly_unknown_fluid(fluid_true):
    out["fluid_skipped"] = partly_unknown_fluid(fluid_true)
  if "boundaries" in outputs[0]:
    pred = np.concatenate([o["boundaries"] for o in outputs], axis=-1)
    out["boundary_head"] = {"geometry": _geometry_errors(pred, true_bounds, pixel_um)}
  return out


def calibration(outputs: List[Dict], masks, true_bounds, pixel_um: float,
                pred_bounds: np.ndarray, supported: np.ndarray, uncertain_um: float,
                position_sd: Optional[np.ndarray] = None, position_sd_um: float = 0.0) -> Dict:
  """ECE and reliability of the top-class confidence (uncertainty.reliability, over all scans'
  labelled pixels, the rows outside the model's band, certain background, included) and under
  'band' the ECE over the band's pixels only;
  for an ensemble also the rank correlation of the members' boundary spread with the boundary
  error of the averaged prediction, per boundary and pooled, and the error in the columns a
  flag on the spread over uncertain_um marks (among the supported columns) and in the
  others. true_bounds, pred_bounds: the masks' boundaries and the prediction's sub-pixel ones
  as predict writes them (geometry.predicted_geometry), [8, sum W]; supported [sum W] its
  columns that predict measures (geometry.supported_columns). The spread is converted at
  pixel_um (the files' row size, run_scale, or the config's for the validation split), as
  predict flags it. position_sd [8, sum W] (rows; geometry.boundary_position_sd of the
  averaged probabilities, smoothed as the boundaries are) gets the same rank correlation and,
  as the members' spread, the error of the most uncertain tenth of the (boundary, column)
  pairs against the rest (uncertainty.top_share_error), and under position_sd_columns how a
  flag at position_sd_um on it (uncertain_um where 0) splits the error. Each flag says whether
  predict flags by it (predict_flags, uncertainty.flag_rule). Each flag also gets its
  curve over thresholds (uncertainty.flag_curve; a column is wrong where its boundaries are off
  by more than uncertainty.WRONG_UM, 2 Duke axial pixels, on average), to choose a threshold by
  cross-validation."""
  band, outside = [], []                 # each pixel binned once: all = band + the rows outside
  for o, m in zip(outputs, masks):
    top, stop = o["band"]
    band.append(uncertainty.reliability(o["probs"][top:stop], m[top:stop]))
    outside += [uncertainty.reliability(o["probs"][:top], m[:top]),
                uncertainty.reliability(o["probs"][stop:], m[stop:])]
  out = uncertainty.merge_reliability(band + outside)
  in_band = uncertainty.merge_reliability(band)
  out["band"] = {"ece": in_band["ece"], "pixels": in_band["pixels"],
                 "about": "the pixels of the model's input band only (the rows outside it are "
                          "certain background in the output and count in 'ece')"}
  rule = uncertainty.flag_rule("boundary_sd_rows" in outputs[0], uncertain_um, position_sd_um)
  if "boundary_sd_rows" in outputs[0]:
    sd = np.concatenate([o["boundary_sd_rows"] for o in outputs], axis=-1) * pixel_um
    out["uncertainty_vs_error"] = ranks_errors(sd, pred_bounds, true_bounds, pixel_um)
    out.update(flag_scores("uncertain", sd, pred_bounds, true_bounds, pixel_um, uncertain_um,
                           supported))
    out["uncertain_columns"]["predict_flags"] = bool(rule) and rule[0] == uncertainty.SPREAD
  if position_sd is not None:
    sd = np.asarray(position_sd) * pixel_um
    out["position_sd_vs_error"] = ranks_errors(sd, pred_bounds, true_bounds, pixel_um)
    out.update(flag_scores("position_sd", sd, pred_bounds, true_bounds, pixel_um,
                           position_sd_um or uncertain_um, supported))
    out["position_sd_columns"]["predict_flags"] = bool(rule) and rule[0] == uncertainty.POSITION_SD
  return out


def flag_scores(name: str, uncertainty_um, pred_bounds, true_bounds, pixel_um: float,
                threshold_um: float, supported) -> Dict:
  """NAME_columns (uncertainty.flagged_columns_error at threshold_um) and NAME_columns_curve
  (uncertainty.flag_curve, wrong beyond WRONG_UM, at FLAG_CURVE_UM and threshold_um) of an
  uncertainty [8, W] in um."""
  args = (uncertainty_um, pred_bounds, true_bounds, pixel_um)
  thresholds = uncertainty.FLAG_CURVE_UM + (float(threshold_um),)
  return {f"{name}_columns": uncertainty.flagged_columns_error(*args, threshold_um, supported),
          f"{name}_columns_curve": uncertainty.flag_curve(*args, supported, uncertainty.WRONG_UM,
                                                          thresholds)}


def ranks_errors(uncertainty_um: np.ndarray, pred_bounds, true_bounds, pixel_um: float) -> Dict:
  """How an uncertainty [8, W] (um) ranks the boundary errors: uncertainty_vs_error's rank
  correlations and, under top_tenth, top_share_error's split."""
  return {**uncertainty.uncertainty_vs_error(uncertainty_um, pred_bounds, true_bounds, pixel_um),
          "top_tenth": uncertainty.top_share_error(uncertainty_um, pred_bounds, true_bounds,
                                                   pixel_um)}
