"""From label maps to what a clinician reads: boundaries, thickness, boundary error, topology.

Conventions (the Duke masks' own): boundary k (k = 1..8: ILM, NFL/GCL, IPL/INL, INL/OPL,
OPL/ONL, ISM/ISE, OS/RPE, BM) is the row of the top edge of layer k (layer 8 meaning the
background below BM), so layer k occupies rows [b_k, b_k+1) and its thickness is b_k+1 - b_k.
Arrays are [..., H, W] label maps and [..., 8, W] boundaries; NaN marks an unknown boundary.
All functions are pure numpy (and scipy.ndimage's Gaussian filter).
"""

from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy import ndimage

from octseg_jax.anatomy import IGNORE, NUM_BOUNDARIES, NUM_LAYERS



def boundaries_from_labels(labels: np.ndarray, ignore_unknown: bool = True) -> np.ndarray:
  """Label maps [..., H, W] -> boundary rows [..., 8, W] (float; NaN where unknown).

  b_k = first row whose label is a layer >= k (b_8 = one past the last layer row); a layer
  absent from a column gets zero thickness (b_k = b_k+1). With ignore_unknown, a boundary whose
  row above is IGNORE is NaN (it passes through unlabelled fluid at an unknown row), and so is
  every boundary of a column without layer pixels.
  """
  labels = np.asarray(labels)
  h = labels.shape[-2]
  rows = np.arange(h).reshape((h, 1))
  is_layer = (labels >= 1) & (labels <= NUM_LAYERS)
  has = is_layer.any(axis=-2)                                        # [..., W]
  last = np.where(is_layer, rows, -1).max(axis=-2)
  out = np.empty(labels.shape[:-2] + (NUM_BOUNDARIES,) + labels.shape[-1:], np.float64)
  out[..., 7, :] = last + 1
  for k in range(NUM_LAYERS, 0, -1):
    first = np.where(is_layer & (labels >= k), rows, h).min(axis=-2)
    out[..., k - 1, :] = np.minimum(first, out[..., k, :])
  out[~np.broadcast_to(has[..., None, :], out.shape)] = np.nan
  if ignore_unknown:
    unknown = labels == IGNORE
    b = np.nan_to_num(out, nan=0).astype(int)
    above = np.take_along_axis(unknown, np.clip(b - 1, 0, h - 1), axis=-2) & (b > 0)
    below_last = np.take_along_axis(unknown, np.clip(b[..., 7:8, :], 0, h - 1), axis=-2)
    above[..., 7:8, :] |= below_last & (b[..., 7:8, :] < h)
    out[above] = np.nan
  return out


REFINE_WINDOW = 4      # rows above and below a boundary that boundaries_from_probs reads


def boundaries_from_probs(probs: np.ndarray, labels: Optional[np.ndarray] = None,
                          window: int = REFINE_WINDOW) -> np.ndarray:
  """Sub-pixel boundaries from class probabilities [..., H, W, K] -> [..., 8, W].

  Each boundary starts from its row in an anatomically ordered labelling (`labels`, by default
  enforce_topology of the probabilities) and is refined locally: over the `window` rows above
  and below it, boundary k moves to (b_k - window) + sum of P(row lies above boundary k), where
  P(above k) = background probability above the retina plus the probabilities of layers 1..k-1.
  Only nearby rows count, so faint probability mass far from a boundary cannot bias it. For
  one-hot probabilities of a valid column the result equals boundaries_from_labels exactly.
  """
  return _summed(*_rows_above(probs, labels, window))


def _summed(start: np.ndarray, above: np.ndarray) -> np.ndarray:
  """b_k - window plus the q_j in order, as boundaries_from_probs has always added them."""
  out = start
  for q in above:
    out = out + q
  return out


def boundary_position_sd(probs: np.ndarray, labels: Optional[np.ndarray] = None,
                         window: int = REFINE_WINDOW) -> np.ndarray:
  """How sharply the probabilities place each boundary: [..., H, W, K] -> [..., 8, W] rows.

  boundaries_from_probs reads q_j = P(row b_k - window + j lies above boundary k), j = 0..
  2 window - 1, as the survival function of the boundary's offset X from b_k - window:
  E[X] = sum_j q_j (its position), E[X^2] = sum_j (2j + 1) q_j, and this is the sd
  sqrt(E[X^2] - E[X]^2) (0 where the variance rounds below 0; NaN where the boundary is
  unknown). 0 for one-hot probabilities; at most `window` rows where q falls with j, as it
  does when the probabilities order the layers. For averaged probabilities (an
  ensemble) it is the sd of the members' mixture: their own spreads and their disagreement."""
  return _position_sd(_rows_above(probs, labels, window)[1])


def _position_sd(above: np.ndarray) -> np.ndarray:
  """boundary_position_sd from _rows_above's q [2 window, ..., 8, W]."""
  steps = 2.0 * np.arange(above.shape[0], dtype=np.float64) + 1.0
  mean = above.sum(axis=0)
  second = np.tensordot(steps, above, axes=1)
  return np.where(np.isfinite(mean), np.sqrt(np.maximum(second - mean ** 2, 0.0)), np.nan)


def _rows_above(probs: np.ndarray, labels: Optional[np.ndarray], window: int):
  """(b_k - window [..., 8, W], q [2 window, ..., 8, W]: P(row b_k - window + j lies above
  boundary k), 1 above the scan and 0 below it; NaN where the boundary is unknown) for
  boundaries_from_probs and boundary_position_sd."""
  p = np.asarray(probs)
  h = p.shape[-3]
  if labels is None:
    labels, _ = ordered_labels(p)
  hard = boundaries_from_labels(labels, ignore_unknown=False)             # [..., 8, W]
  centre = np.argmax(p[..., 1:NUM_LAYERS + 1].astype(np.float64).sum(axis=-1), axis=-2)  # [..., W]
  known = np.isfinite(hard)
  b = np.where(known, hard, 0).astype(int)
  above = []
  for offset in range(-window, window):
    r = b + offset                                                          # [..., 8, W]
    rc = np.clip(r, 0, h - 1)
    # Only the rows in the windows are read: P(row above boundary k) at row rc of boundary k.
    p_r = np.take_along_axis(p, rc[..., None], axis=-3).astype(np.float64)  # [..., 8, W, K]
    top_background = np.where(rc < centre[..., None, :], p_r[..., 0], 0.0)   # [..., 8, W]
    layers_above = np.cumsum(p_r[..., 1:NUM_LAYERS + 1], axis=-1)           # [..., 8, W, 7]
    value = top_background.copy()                      # boundary 1 (ILM): background only
    for k in range(1, NUM_BOUNDARIES):                 # boundary k+1: plus layers 1..k
      value[..., k, :] += layers_above[..., k, :, k - 1]
    value = np.where(r < 0, 1.0, np.where(r >= h, 0.0, value))
    above.append(np.where(known, value, np.nan))
  return np.where(known, b - float(window), np.nan), np.stack(above)


def thickness_um(bounds: np.ndarray, pixel_um: float) -> np.ndarray:
  """Boundaries [..., 8, W] -> thickness of layers 1..7 [..., 7, W] in micrometres."""
  return np.diff(bounds, axis=-2) * pixel_um


def retina_found(bounds: np.ndarray) -> np.ndarray:
  """Columns where the retina was found (ILM and BM both known): bool [..., W] from boundaries
  [..., 8, W]. Elsewhere nothing was measured, fluid included: its height there is unknown,
  not 0."""
  return np.isfinite(bounds[..., 0, :]) & np.isfinite(bounds[..., -1, :])


def fluid_where_measured(fluid_um: np.ndarray, bounds: np.ndarray) -> np.ndarray:
  """Fluid heights [..., W] (um) with NaN in the columns where no retina was found."""
  return np.where(retina_found(bounds), np.asarray(fluid_um, np.float64), np.nan)


def boundary_error(pred: np.ndarray, true: np.ndarray, pixel_um: float) -> Dict[str, np.ndarray]:
  """Per-boundary error over columns where both are known: mean absolute and mean signed
  (pred - true, positive = predicted deeper), in pixels and um, with the column count."""
  diff = pred - true                                                 # [..., 8, W]
  known = np.isfinite(diff)
  d = np.moveaxis(np.where(known, diff, 0.0), -2, 0).reshape(NUM_BOUNDARIES, -1)
  n = np.moveaxis(known, -2, 0).reshape(NUM_BOUNDARIES, -1).sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    mae = np.abs(d).sum(axis=1) / n
    signed = d.sum(axis=1) / n
  return {"mae_px": mae, "signed_px": signed, "mae_um": mae * pixel_um,
          "signed_um": signed * pixel_um, "columns": n}


LOW_SUPPORT = 0.5   # a scan or sector supported in fewer of its columns is read with a warning


def supported_columns(raw_labels: np.ndarray, bounds: np.ndarray) -> np.ndarray:
  """[..., W] bool: the columns where predict reports thickness and flags uncertainty: the raw
  (argmax) labelling [..., H, W] is in anatomical order (column_is_ordered) and every one of the
  boundaries [..., 8, W] was found."""
  return column_is_ordered(raw_labels) & np.isfinite(bounds).all(axis=-2)


def low_support(supported: np.ndarray) -> np.ndarray:
  """Scans [N] (or one scan) supported (supported_columns [..., W]) in fewer than LOW_SUPPORT of
  their columns: predict and explain warn about them, and summary.csv gives them no means."""
  return np.asarray(supported).mean(axis=-1) < LOW_SUPPORT


def labelling_support(labels: np.ndarray) -> np.ndarray:
  """[..., W] bool: supported_columns of an argmax labelling [..., H, W] before the order fix,
  from its own boundaries: where the argmax is in order, the order fix leaves it unchanged, so
  these are the columns predict would report (on whatever grid `labels` is)."""
  return supported_columns(labels, boundaries_from_labels(labels))


def column_is_ordered(labels: np.ndarray) -> np.ndarray:
  """[..., H, W] -> [..., W] bool: background, then layers 1..7 non-decreasing with each layer
  contiguous, then background (IGNORE pixels are skipped)."""
  labels = np.asarray(labels).astype(np.int16)
  h = labels.shape[-2]
  # Map to states: top background 0, layers 1..7, bottom background 8; the column is valid when
  # the state sequence is non-decreasing. A background pixel is 'top' before any layer pixel.
  is_layer = (labels >= 1) & (labels <= NUM_LAYERS)
  seen_layer = np.cumsum(is_layer, axis=-2) > 0
  state = np.where(labels == 0, np.where(seen_layer, 8, 0), labels)
  known = labels != IGNORE
  # Carry the last known state down over IGNORE pixels, then check monotonicity.
  idx = np.where(known, np.arange(h).reshape((h, 1)), 0)
  idx = np.maximum.accumulate(idx, axis=-2)
  filled = np.take_along_axis(state, idx, axis=-2)
  return (np.diff(filled, axis=-2) >= 0).all(axis=-2)


PROB_FLOOR = 1e-7      # probabilities are clipped here before their log (ordered_labels)


def ordered_labels(probs: np.ndarray, report_changed: bool = True):
  """enforce_topology of class probabilities [..., H, W, K] (their log, clipped at PROB_FLOOR,
  in the probabilities' dtype): the anatomically ordered labelling and the changed columns."""
  return enforce_topology(np.log(np.clip(probs, PROB_FLOOR, 1.0)), report_changed)


def predicted_geometry(probs: np.ndarray, smooth_sd: float = 0.0, report_changed: bool = True):
  """What predict writes and eval scores, from class probabilities [..., H, W, K]: (the ordered
  labelling, its changed columns (None without report_changed), the sub-pixel boundaries
  [..., 8, W] refined around it (boundaries_from_probs)). With smooth_sd > 0 (the config's
  predict.smooth_sd_columns) both are smoothed along the B-scan by the same Gaussian: the
  labelling by smooth_labelling, the sub-pixel boundaries by smooth_boundaries
  (smooth_geometry)."""
  labels, changed = ordered_labels(probs, report_changed)
  return smooth_geometry((labels, changed, boundaries_from_probs(probs, labels)), smooth_sd)


def geometry_and_position_sd(probs: np.ndarray, smooth_sd: float = 0.0,
                             report_changed: bool = True) -> Tuple[Tuple, np.ndarray]:
  """(predicted_geometry(probs, smooth_sd, report_changed), each boundary's position sd in
  rows [..., 8, W]: boundary_position_sd around the ordered labelling's boundaries, smoothed
  along the B-scan by the same Gaussian as they are (a weighted mean of sds: the sd of the
  smoothed boundary where the columns' errors move together, more than it where they do not))."""
  labels, changed = ordered_labels(probs, report_changed)
  start, above = _rows_above(probs, labels, REFINE_WINDOW)
  geometry = smooth_geometry((labels, changed, _summed(start, above)), smooth_sd)
  return geometry, smooth_boundaries(_position_sd(above), smooth_sd)


def smooth_geometry(geometry: Tuple, smooth_sd: float) -> Tuple:
  """predicted_geometry's unsmoothed (labels, changed, sub-pixel boundaries) as
  predicted_geometry gives them with smooth_sd, without running the order fix again; sd 0
  returns `geometry` itself."""
  if smooth_sd <= 0:
    return geometry
  labels, changed, bounds = geometry
  return smooth_labelling(labels, smooth_sd), changed, smooth_boundaries(bounds, smooth_sd)


def smooth_labelling(labels: np.ndarray, sd_columns: float) -> np.ndarray:
  """An ordered labelling [..., H, W] (uint8) redrawn from its boundaries smoothed along the
  B-scan (smooth_boundaries, Gaussian sd `sd_columns` columns) and rounded to whole rows
  (labels_from_boundaries). Columns without layer pixels keep their labels; sd 0 returns
  `labels` itself."""
  if sd_columns <= 0:
    return labels
  bounds = boundaries_from_labels(labels, ignore_unknown=False)
  redrawn = labels_from_boundaries(smooth_boundaries(bounds, sd_columns), labels.shape[-2])
  known = np.isfinite(bounds).all(axis=-2)
  return np.where(known[..., None, :], redrawn, labels).astype(np.uint8)


def smooth_boundaries(bounds: np.ndarray, sd_columns: float) -> np.ndarray:
  """Boundaries [..., 8, W] convolved along the columns with a Gaussian of sd `sd_columns`
  (scipy.ndimage.gaussian_filter1d, truncated at 4 sd), separately within each run of columns
  where all 8 boundaries are known; a run's ends are extended by their own value (mode
  'nearest'), and other columns are left as they are. Every boundary of a column gets the same
  weights, so boundaries in anatomical order stay in order. Returns float64; sd 0 a copy."""
  out = np.array(bounds, np.float64)
  if sd_columns <= 0:
    return out
  flat = out.reshape((-1,) + out.shape[-2:])                          # a view of out
  for scan in flat:
    for start, stop in known_runs(np.isfinite(scan).all(axis=0)):
      scan[:, start:stop] = ndimage.gaussian_filter1d(scan[:, start:stop], sd_columns,
                                                      axis=-1, mode="nearest")
  return out


def known_runs(known: np.ndarray) -> List[Tuple[int, int]]:
  """The runs of True in a 1-D bool array as (start, stop) pairs, in order."""
  edges = np.diff(np.concatenate([[0], known.astype(np.int8), [0]]))
  return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def labels_from_boundaries(bounds: np.ndarray, height: int) -> np.ndarray:
  """Boundaries [..., 8, W] in anatomical order -> label maps uint8 [..., H, W]: each boundary
  rounded to the nearest row (halves up: floor(b + 0.5), so order is kept and a column with a
  retina of at least one row keeps one), background above b_1, layer k in rows [b_k, b_k+1)
  and background from b_8 down; a column with an unknown boundary is all background. For an
  ordered labelling L, labels_from_boundaries(boundaries_from_labels(L), H) == L in every
  column with layer pixels."""
  b = np.asarray(bounds, np.float64)
  known = np.isfinite(b).all(axis=-2)                                 # [..., W]
  rows = np.arange(height, dtype=np.float64).reshape((height, 1))
  above = np.zeros(b.shape[:-2] + (height, b.shape[-1]), np.uint8)    # boundaries at or above
  for k in range(NUM_BOUNDARIES):
    above += rows >= np.floor(b[..., k:k + 1, :] + 0.5)
  labels = np.where(above == NUM_BOUNDARIES, 0, above).astype(np.uint8)
  return np.where(known[..., None, :], labels, 0).astype(np.uint8)


def enforce_topology(log_probs: np.ndarray,
                     report_changed: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
  """The most probable anatomically valid labelling of each column.

  log_probs [..., H, W, K=8] (log class probabilities, pixels independent). Over labellings of
  the form 0..0 1..1 2..2 ... 7..7 0..0 (each run may be empty), returns the one maximising the
  summed log probability (exact MAP under the ordering constraint), by a Viterbi pass over
  states s = 0 (background above), 1..7 (layers), 8 (background below) with only s -> s' >= s
  transitions. O(H * 9) per column, vectorised over all columns of all scans (states on the
  first axis, so every step works on contiguous rows of columns), over the rows between the
  certain background at the top and bottom (certain_background_rows; predict's rows outside
  the model's band) with the same labels as a pass over every row. Returns (labels uint8
  [..., H, W], changed [..., W] bool: columns whose argmax labelling was not already valid;
  None without `report_changed`).
  """
  log_probs = np.asarray(log_probs)
  lead = log_probs.shape[:-3]
  height, w = log_probs.shape[-3:-1]
  top, stop = certain_background_rows(log_probs)
  labels = np.zeros(lead + (height, w), np.uint8)
  if top < stop:
    labels[..., top:stop, :] = _viterbi(log_probs[..., top:stop, :, :])
  if not report_changed:
    return labels, None
  argmax = np.argmax(log_probs, axis=-1)
  return labels, ~column_is_ordered(argmax)


def certain_background_rows(log_probs: np.ndarray) -> Tuple[int, int]:
  """(top, stop): rows [0, top) and [stop, H) of log_probs [..., H, W, K] are certain
  background in every column (log P(background) == 0, every other class < 0), as predict's
  rows outside the model's band are. The ordered labelling there is background, and the
  Viterbi pass over rows [top, stop) alone gives exactly the labels of a pass over all rows:
  above, the path that stays in state 0 scores 0 and every other path less, so row `top` starts
  from a running best of 0 for every state, as a fresh pass does; below, states 0 and 8 gain 0
  per row and layers lose, so the pass ends in the first best state of row stop - 1 (state 0
  only where it is that state), as a pass ending there does."""
  h, w, k = log_probs.shape[-3:]
  flat = log_probs.reshape((-1, h, w, k))
  background = (flat[..., 0] == 0).all(axis=(0, 2))                        # [H]
  # Every other class must be < 0 there as well (read only in the candidate rows).
  top = _leading_true((flat[:, :_leading_true(background), :, 1:] < 0).all(axis=(0, 2, 3)))
  below = flat[:, h - _leading_true(background[::-1]):, :, 1:]
  bottom = _leading_true((below < 0).all(axis=(0, 2, 3))[::-1])
  return top, max(h - bottom, top)


def _leading_true(mask: np.ndarray) -> int:
  """How many leading entries of the 1-D bool `mask` are True."""
  return len(mask) if mask.all() else int(np.argmin(mask))


def _viterbi(log_probs: np.ndarray) -> np.ndarray:
  """The Viterbi pass of enforce_topology over all rows of log_probs [..., H, W, K] ->
  labels uint8 [..., H, W]."""
  lp = np.asarray(log_probs, np.float64)
  lead = lp.shape[:-3]
  h, w, k = lp.shape[-3:]
  lp = lp.reshape((-1, h, w, k)).transpose(1, 3, 0, 2).reshape(h, k, -1)   # [H, K, C]
  state_class = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0])
  emit = lp[:, state_class]                                                # [H, 9, C]
  back = np.empty(emit.shape, np.int8)
  back[0] = np.arange(9)[:, None]
  score = emit[0].copy()                                                   # [9, C]
  best_prev = np.empty_like(score)
  for r in range(1, h):               # in place (out=): this loop is most of predict's geometry
    _running_max(score, out=best_prev)                                     # max over s' <= s
    _running_argmax(best_prev, out=back[r])
    np.add(best_prev, emit[r], out=score)
  states = np.empty((h, score.shape[1]), np.int8)
  states[-1] = np.argmax(score, axis=0)
  cols = np.arange(score.shape[1])
  for r in range(h - 1, 0, -1):
    states[r - 1] = back[r, states[r], cols]
  labels = state_class[states].astype(np.uint8)                            # [H, C]
  return labels.reshape(h, -1, w).transpose(1, 0, 2).reshape(lead + (h, w))


def _running_argmax(best: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
  """For each s, the index of max(score[:s+1]) over the first axis (first on ties), given the
  running maximum best = np.maximum.accumulate(score, axis=0): best rises at s exactly where
  score[s] beats every earlier score, and the answer at s is the last such place at or before
  s (the running maximum of those indices), so no pair of states is compared. Returns int8
  (written into `out` when given)."""
  n = best.shape[0]
  if out is None:
    out = np.empty(best.shape, np.int8)
  index = np.arange(1, n, dtype=np.int8).reshape((n - 1,) + (1,) * (best.ndim - 1))
  out[0] = 0
  np.multiply(best[1:] > best[:-1], index, out=out[1:])
  return _running_max(out, out=out)


def _running_max(a: np.ndarray, out: np.ndarray) -> np.ndarray:
  """np.maximum.accumulate(a, axis=0, out=out) (out may be a), one np.maximum per index of
  the short first axis: for the Viterbi's [9, columns] arrays this is several times faster
  than numpy's accumulate along axis 0, which steps column by column."""
  out[0] = a[0]
  for s in range(1, a.shape[0]):
    np.maximum(out[s - 1], a[s], out=out[s])
  return out
