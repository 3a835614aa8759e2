"""Inference levers and uncertainty of issue 13: flip averaging, ensembles of workdirs,
per-pixel and per-column uncertainty, calibration and whether uncertainty finds the errors.

Pure numpy math first (probabilities in, numbers out), then the loading/prediction of a list of
workdirs and one evaluation of an ensemble on its members' common validation split
(`evaluate_ensemble`, called by scripts/eval_ensemble.py). Not yet wired into --mode=predict /
--mode=eval (see docs/architecture.md, "Ensembles and uncertainty").

Shapes: a "view" is one set of class probabilities of a scan, [H, W, K]; `views` stacks the
views of one scan, [V, H, W, K] (ensemble members, each optionally also on the mirrored scan).
Entropies are in nats. Boundaries follow octseg_jax/geometry/boundaries.py ([8, W] rows, NaN where
unknown).
"""

import dataclasses
import json
import os
from typing import Callable, Dict, List, Sequence

import numpy as np
from scipy import stats

from octseg_jax.geometry import boundaries as geom
from octseg_jax.data.preprocessing import IGNORE

DEFAULT_THRESHOLD_UM = 7.74     # 2 axial pixels of the Duke Spectralis scans; not tuned
ENSEMBLE_FILE = "ensemble.json"  # in a workdir: {"members": [paths], "flip": bool}


# ---------------------------------------------------------------- combining views

def flip_views(probs_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
  """[2, ..., H, W, K]: probs_fn(x) and probs_fn of the horizontally mirrored x mirrored back.

  probs_fn maps images [..., H, W] to probabilities [..., H, W, K]; the mirror is the last
  image axis (columns)."""
  direct = np.asarray(probs_fn(x))
  mirrored = np.asarray(probs_fn(np.flip(x, axis=-1)))
  return np.stack([direct, np.flip(mirrored, axis=-2)])


def mean_probs(views: np.ndarray) -> np.ndarray:
  """[V, ..., K] -> [..., K]: the averaged probabilities (flip averaging, ensembling)."""
  return np.mean(np.asarray(views, np.float64), axis=0)


# ---------------------------------------------------------------- per-pixel uncertainty

def predictive_entropy(probs: np.ndarray) -> np.ndarray:
  """[..., K] -> [...]: -sum_k p_k log p_k (0 log 0 = 0); 0 for one-hot, log K for uniform."""
  p = np.asarray(probs, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)


def mutual_information(views: np.ndarray) -> np.ndarray:
  """[V, ..., K] -> [...]: the views' disagreement as entropy of the mean minus the mean
  entropy (>= 0; 0 when all views agree, whatever their confidence)."""
  return np.maximum(predictive_entropy(mean_probs(views))
                    - predictive_entropy(views).mean(axis=0), 0.0)


def disagreement_rate(views: np.ndarray) -> np.ndarray:
  """[V, ..., K] -> [...]: share of views whose argmax differs from the mean's argmax."""
  views = np.asarray(views)
  consensus = np.argmax(mean_probs(views), axis=-1)
  return np.mean(np.argmax(views, axis=-1) != consensus[None], axis=0)


# ---------------------------------------------------------------- per-column uncertainty

def boundary_uncertainty_um(views: np.ndarray, pixel_um: float) -> np.ndarray:
  """[V, H, W, K] -> [8, W]: population sd over views of each view's sub-pixel boundary row
  (layers_geometry.boundaries_from_probs), in micrometres; NaN where a view lacks the boundary.
  Needs V >= 2 views (else every column is 0)."""
  bounds = np.stack([geom.boundaries_from_probs(v) for v in np.asarray(views)])   # [V, 8, W]
  return np.std(bounds, axis=0) * pixel_um


def flag_columns(uncertainty_um: np.ndarray, threshold_um: float) -> np.ndarray:
  """[8, W] -> [W] bool: columns where some known boundary's uncertainty exceeds the threshold."""
  u = np.asarray(uncertainty_um, np.float64)
  return np.any(np.where(np.isfinite(u), u, -np.inf) > threshold_um, axis=-2)


# ---------------------------------------------------------------- calibration

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


# ---------------------------------------------------------------- does uncertainty find errors

def rank_correlation(a: np.ndarray, b: np.ndarray) -> Dict:
  """Spearman's rho (ties get average ranks) over the pairs where both are finite; rho is NaN
  with fewer than 3 pairs or a constant side."""
  a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
  keep = np.isfinite(a) & np.isfinite(b)
  n = int(keep.sum())
  if n < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
    return {"rho": float("nan"), "pairs": n}
  return {"rho": float(stats.spearmanr(a[keep], b[keep])[0]), "pairs": n}


def uncertainty_vs_error(uncertainty_um: np.ndarray, pred_bounds: np.ndarray,
                         true_bounds: np.ndarray, pixel_um: float) -> Dict:
  """Rank correlation between boundary uncertainty and absolute boundary error (both in um),
  per boundary (8 entries) and over all boundaries pooled. Arrays [8, W] (W may be several
  scans' columns concatenated)."""
  err = np.abs(np.asarray(pred_bounds) - np.asarray(true_bounds)) * pixel_um
  return {"per_boundary": [rank_correlation(uncertainty_um[k], err[k])
                           for k in range(geom.NUM_BOUNDARIES)],
          "pooled": rank_correlation(uncertainty_um, err)}


# ---------------------------------------------------------------- workdirs (I/O)

def predict_views(members: Sequence, images: List[np.ndarray], flip: bool) -> List[np.ndarray]:
  """Per raw scan, float32 [V, H, W, K] at its own resolution: each member (inference.Trained)
  on the scan, and with flip also on the mirrored scan (mirrored back); V = members x (1 or 2)."""
  from octseg_jax.serving.inference import predict_probs
  per_view = []
  for trained in members:
    per_view.append(predict_probs(trained, images))
    if flip:
      mirrored = predict_probs(trained, [np.ascontiguousarray(im[:, ::-1]) for im in images])
      per_view.append([p[:, ::-1] for p in mirrored])
  return [np.stack([view[i] for view in per_view]).astype(np.float32)
          for i in range(len(images))]


def check_common_validation(members):
  from octseg_jax.errors import InputError
  names = members[0].split["val"]["names"]
  for m in members[1:]:
    if m.split["val"]["names"] != names:
      raise InputError(f"{m.workdir}/split.json: validation scans differ from those of "
                       f"{members[0].workdir}; an ensemble is scored on one common split")


def evaluate_ensemble(workdirs: Sequence[str], output: str, flip: bool = True,
                      threshold_um: float = DEFAULT_THRESHOLD_UM) -> Dict:
  """Scores the averaged probabilities of `workdirs` (same validation split, e.g. seeds of
  one fold) like --mode=eval, plus calibration, uncertainty and its rank correlation with the
  boundary error; writes OUTPUT/ensemble_metrics.json and returns it."""
  from octseg_jax.modes import evaluate
  from octseg_jax.serving.inference import load_trained
  from octseg_jax.outputs.atomic import write_json
  members = [load_trained(w) for w in workdirs]
  check_common_validation(members)
  images, masks, _, subjects, _ = evaluate.validation_scans(members[0])
  pixel_um = float(members[0].config.data.pixel_um)
  views = predict_views(members, images, flip)
  probs = [mean_probs(v) for v in views]
  result = evaluate.score(probs, masks, subjects, pixel_um)
  unc, pred_b, true_b, cal = [], [], [], []
  for v, p, m in zip(views, probs, masks):
    unc.append(boundary_uncertainty_um(v, pixel_um))
    pred_b.append(geom.boundaries_from_probs(p))
    true_b.append(geom.boundaries_from_labels(m))
    cal.append(reliability(p, m))
  unc = np.concatenate(unc, axis=-1)
  flagged = flag_columns(unc, threshold_um)
  result.update({
      "workdirs": list(workdirs), "flip": flip, "views_per_scan": int(views[0].shape[0]),
      "calibration": merge_reliability(cal),
      "uncertainty": {
          "mean_entropy": float(np.mean([predictive_entropy(p).mean() for p in probs])),
          "mean_mutual_information": float(np.mean([mutual_information(v).mean()
                                                    for v in views])),
          "boundary_uncertainty_um_mean": np.nanmean(unc, axis=-1).tolist(),
          "threshold_um": threshold_um, "flagged_columns": int(flagged.sum()),
          "columns": int(flagged.size),
          "vs_boundary_error": uncertainty_vs_error(unc, np.concatenate(pred_b, -1),
                                                    np.concatenate(true_b, -1), pixel_um)},
  })
  os.makedirs(output, exist_ok=True)
  write_json(os.path.join(output, "ensemble_metrics.json"), result)
  return result


def view_uncertainty(raw: np.ndarray, views: np.ndarray, placements) -> Dict[str, np.ndarray]:
  """An ensemble's uncertainty for scans of one size: entropy of the averaged probabilities
  raw [g, H, W, K] (nats, float16) and the views' spread (population sd, rows) of each
  sub-pixel boundary at the scans' resolution, boundary_sd_rows [g, 8, W]; views:
  [V, g, h, w, K] at model resolution, mapped back with `placements`."""
  return {"entropy": predictive_entropy(raw).astype(np.float16),
          "boundary_sd_rows": boundary_spread_rows(views, placements)}


def boundary_spread_rows(views: np.ndarray, placements) -> np.ndarray:
  """[g, 8, W]: the views' spread (population sd, rows) of each sub-pixel boundary at the
  scans' own resolution; views [V, g, h, w, K] at model resolution."""
  from octseg_jax.data import preprocessing
  sd = []
  for j, placement in enumerate(placements):
    per_view = [preprocessing.restore(v[j], placement) for v in views]       # V x [H, W, K]
    sd.append(boundary_uncertainty_um(np.stack(per_view), 1.0))
  return np.stack(sd)


# ---------------------------------------------------------------- an ensemble workdir

@dataclasses.dataclass
class Ensemble:
  """An ensemble workdir (ENSEMBLE_FILE) as one trained model: the members' softmax outputs
  averaged, each member also on the mirrored scan with `flip`. It offers what predict and eval
  use of inference.Trained (config, recipe, split, device_probs, device_heads, views)."""
  members: list          # inference.Trained, sharing one preprocessing recipe
  flip: bool
  workdir: str

  @property
  def config(self):
    return self.members[0].config

  @property
  def recipe(self):
    return self.members[0].recipe

  @property
  def split(self):
    return self.members[0].split

  @property
  def epoch(self):
    return [m.epoch for m in self.members]

  @property
  def head_names(self) -> tuple:
    return tuple(h for h in self.members[0].head_names
                 if all(h in m.head_names for m in self.members))

  @property
  def num_views(self) -> int:
    return len(self.members) * (2 if self.flip else 1)

  def device_views(self, x):
    """Softmax probabilities of every view [V, B, h, w, K] (members x (direct, mirrored))."""
    import jax.numpy as jnp
    views = []
    for m in self.members:
      views.append(m.device_probs(x))
      if self.flip:
        views.append(jnp.flip(m.device_probs(np.ascontiguousarray(np.flip(x, -1))), -2))
    return jnp.stack(views)

  def device_probs(self, x):
    return self.device_views(x).mean(axis=0)

  def probs(self, x) -> np.ndarray:
    return np.asarray(self.device_probs(x))

  def device_outputs(self, x):
    """(device_probs, device_heads) as for one model (here two passes over the members)."""
    return self.device_probs(x), self.device_heads(x)

  def device_heads(self, x) -> dict:
    """The heads' outputs averaged over the views (fluid probability, boundary rows)."""
    import jax.numpy as jnp
    outs = []
    for m in self.members:
      outs.append(m.device_heads(x))
      if self.flip:
        mirrored = m.device_heads(np.ascontiguousarray(np.flip(x, -1)))
        outs.append({k: jnp.flip(v, -1) for k, v in mirrored.items()})
    return {k: jnp.mean(jnp.stack([o[k] for o in outs]), axis=0) for k in self.head_names}


def read_ensemble_file(workdir: str) -> dict:
  """ENSEMBLE_FILE of a workdir, checked: members (a non-empty list of folder paths, relative
  to the workdir or absolute), flip (bool)."""
  from octseg_jax.errors import InputError
  path = os.path.join(workdir, ENSEMBLE_FILE)
  try:
    with open(path) as f:
      spec = json.load(f)
  except (OSError, ValueError) as e:
    raise InputError(f"{path}: not a readable JSON file ({type(e).__name__})") from None
  members = spec.get("members") if isinstance(spec, dict) else None
  if not (isinstance(members, list) and members and all(isinstance(m, str) for m in members)):
    raise InputError(f"{path}: 'members' must be a non-empty list of workdir paths")
  if not isinstance(spec.get("flip", False), bool):
    raise InputError(f"{path}: 'flip' must be true or false")
  return {"members": [os.path.join(workdir, m) for m in members],
          "flip": spec.get("flip", False)}


def load_ensemble(workdir: str, overrides=None):
  """The ensemble workdir as an Ensemble, or with predict.members=N its first N members
  (N = 1: the first member alone, no flip: the fast single-model path)."""
  from octseg_jax.errors import InputError
  from octseg_jax.serving.inference import load_trained
  spec = read_ensemble_file(workdir)
  requested = int((overrides or {}).get("predict.members", 0))
  paths = spec["members"][:requested or len(spec["members"])]
  for path in paths:
    if os.path.exists(os.path.join(path, ENSEMBLE_FILE)):
      raise InputError(f"{path}: a member of {workdir} is itself an ensemble")
  members = [load_trained(p, overrides) for p in paths]
  for m in members[1:]:
    if m.recipe != members[0].recipe:
      raise InputError(f"{m.workdir}: preprocesses scans differently from {members[0].workdir} "
                       f"({m.recipe} vs {members[0].recipe}); members must share one recipe")
    if int(m.config.model.num_classes) != int(members[0].config.model.num_classes):
      raise InputError(f"{m.workdir}: predicts {m.config.model.num_classes} classes, "
                       f"{members[0].workdir} {members[0].config.model.num_classes}")
  if requested == 1:
    return members[0]
  return Ensemble(members, spec["flip"], workdir)
