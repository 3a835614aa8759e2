"""Metrics from a confusion matrix accumulated over a whole split.

confusion[t, p] counts labelled pixels of true class t predicted as p; IGNORE pixels never
count. Two protocols are reported, and every number says which:

* paper: pixel accuracy, global Dice and IoU over the one-hot tensors of all K classes with
  background (soft: from probabilities, as a Keras metric on softmax outputs computes it; with
  hard one-hot predictions global Dice would equal accuracy), global IoU = D / (2 - D), and
  class-wise IoU and accuracy (recall) from hard predictions.
* literature (ReLayNet and later): per-layer Dice of the 7 layers from hard predictions,
  background excluded, NaN where a class is absent from both truth and prediction; mean over
  layers ignores NaN.
"""

import warnings
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from octseg_jax.learning.losses import valid_mask


def confusion_matrix(labels: jax.Array, preds: jax.Array, num_classes: int) -> jax.Array:
  """[K, K] int32 counts over labelled pixels (jit-friendly)."""
  valid = valid_mask(labels, num_classes)
  flat = jnp.where(valid, labels.astype(jnp.int32) * num_classes + preds.astype(jnp.int32),
                   num_classes * num_classes)
  counts = jnp.bincount(flat.ravel(), length=num_classes * num_classes + 1)
  return counts[:-1].reshape(num_classes, num_classes).astype(jnp.int32)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def dice_of_counts(tp, fp, fn) -> float:
  """Hard Dice 2 TP / (2 TP + FP + FN) of counts; NaN when the class is absent from both the
  truth and the prediction (not 1.0, as some published code scores it)."""
  return float(_ratio(2 * np.asarray(tp, np.float64), 2 * np.asarray(tp, np.float64) + fp + fn))


def per_class(confusion: np.ndarray) -> Dict[str, np.ndarray]:
  """Per-class Dice, IoU and accuracy (recall); NaN where the class is absent everywhere."""
  cm = np.asarray(confusion, np.float64)
  tp = np.diag(cm)
  fp = cm.sum(0) - tp
  fn = cm.sum(1) - tp
  return {"dice": _ratio(2 * tp, 2 * tp + fp + fn), "iou": _ratio(tp, tp + fp + fn),
          "accuracy": _ratio(tp, tp + fn)}


def summarise(confusion: np.ndarray, soft_inter: float = float("nan")) -> Dict:
  """Both protocols from a split's confusion matrix (and soft intersection sum)."""
  cm = np.asarray(confusion, np.float64)
  n = cm.sum()
  pc = per_class(cm)
  accuracy = float(np.trace(cm) / n) if n else float("nan")
  dice = float(soft_inter / n) if n else float("nan")
  layer_dice = pc["dice"][1:]
  return {
      "pixels": int(n),
      "paper": {
          "accuracy": accuracy,
          "global_dice_soft": dice,
          "global_iou_soft": dice / (2 - dice) if np.isfinite(dice) else float("nan"),
          "global_dice_hard": accuracy,
          "class_iou": pc["iou"].tolist(),
          "class_accuracy": pc["accuracy"].tolist(),
          "mean_iou": float(nanmean(pc["iou"])),
      },
      "literature": {
          "layer_dice": layer_dice.tolist(),
          "mean_layer_dice": float(nanmean(layer_dice)),
          "layer_iou": pc["iou"][1:].tolist(),
      },
  }


def nanmean(values, axis=None):
  """np.nanmean without its warning: NaN where every value is NaN (a class absent from every
  scan, a boundary never found, a constant map), which the reports show as n/a."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    return np.nanmean(values, axis=axis)
