"""Does a class map say what the model uses? Removal curves and randomisation sanity checks.

Removal (pure image math; the model is applied by the caller):
  deletion  the top fraction f of pixels by a ranking is set to a constant fill (the image
            mean). Filled pixels form flat bands the network can read as a layer.
  ROAD      (Rong et al., ICML 2022) the removed pixels are replaced by noisy linear
            imputation: each removed pixel is the weighted mean of its 8 neighbours (1/6 for
            the 4 direct ones, 1/12 for the diagonals, neighbours outside the image dropped),
            a sparse linear system over all removed pixels solved here by conjugate gradients,
            plus Gaussian noise of standard deviation `noise`. Removed pixels carry no new
            pattern, only the surrounding intensities.
  Orders: MoRF removes the most relevant pixels first (ranking = map), LeRF the least
  relevant first (ranking = -map), random a uniform random ranking. Ties (ReLU maps have many
  zeros) are broken by a random permutation, never by pixel position.
  A curve is the class's mean probability over its pixel set against the removed fraction; its
  area is taken relative to the unperturbed score and to the fraction range (1.0 = never
  falls). A faithful map has MoRF area below the random-order area.

Sanity (Adebayo et al., NeurIPS 2018): the maps of the trained model against the maps after
re-initialising weights, cascading from the head down block by block and each block alone; a
map with a high Spearman rank correlation to its randomised twin does not depend on what the
model learned.
"""

from typing import Dict, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from octseg_jax.learning.uncertainty import spearman
from octseg_jax.models.segnet import CLASS_HEAD

# (row offset, column offset, weight) of the ROAD imputation stencil.
ROAD_NOISE = 0.01      # sd of ROAD's imputation noise, model-input intensity (explain.road_noise)
KINDS = ("none", "deletion", "road", "all")   # --cam_faithfulness: which removal curves
NEIGHBOURS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
              (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))


def removal_masks(ranking: jax.Array, tiebreak: jax.Array, fractions: jax.Array,
                  valid=None) -> jax.Array:
  """Pixels removed at each fraction: the top round(f * n) by `ranking` (ties broken by
  `tiebreak`, higher first). ranking, tiebreak [H, W]; fractions [S] -> bool [S, H, W].
  valid: bool [H, W], the pixels that may be removed (a padded input's scan); n counts them,
  and the others are never removed."""
  if valid is None:
    n = ranking.size
  else:
    n = jnp.sum(valid)
    ranking = jnp.where(valid, ranking, -jnp.inf)               # ranked after every valid one
  order = jnp.lexsort((-tiebreak.ravel(), -ranking.ravel()))     # last key is the primary one
  size = ranking.size
  position = jnp.empty(size, jnp.int32).at[order].set(jnp.arange(size, dtype=jnp.int32))
  count = jnp.round(fractions * n).astype(jnp.int32)
  return position.reshape(ranking.shape)[None] < count.reshape(-1, 1, 1)


def deletion_images(image: jax.Array, removed: jax.Array, fill) -> jax.Array:
  """image [H, W], removed bool [..., H, W] -> removed pixels set to `fill`."""
  return jnp.where(removed, fill, image)


def neighbour_sum(u: jax.Array) -> jax.Array:
  """Weighted sum of the 8 neighbours with the ROAD stencil, zero outside: [N, H, W]."""
  h, w = u.shape[-2:]
  p = jnp.pad(u, ((0, 0), (1, 1), (1, 1)))
  return sum(wt * p[:, 1 + dr:1 + dr + h, 1 + dc:1 + dc + w] for dr, dc, wt in NEIGHBOURS)


def _solve_harmonic(images, unknown, tol: float, max_iter: int):
  """Conjugate gradients for the removed pixels' values: for each removed p,
  (sum_q w_pq) u_p - sum_{q removed} w_pq u_q = sum_{q kept} w_pq x_q (a symmetric,
  positive definite system while any pixel is kept). images, unknown [N, H, W]."""
  degree = neighbour_sum(jnp.ones((1,) + images.shape[1:], images.dtype))
  apply = lambda u: unknown * (degree * u - neighbour_sum(u))
  b = unknown * neighbour_sum(images * (1 - unknown))
  kept = jnp.maximum(jnp.sum(1 - unknown, axis=(1, 2), keepdims=True), 1)
  u = unknown * jnp.sum(images * (1 - unknown), axis=(1, 2), keepdims=True) / kept
  r = b - apply(u)
  dot = lambda a, c: jnp.sum(a * c, axis=(1, 2), keepdims=True)
  limit = (tol ** 2) * jnp.maximum(dot(b, b), 1e-30)
  safe = lambda num, den: jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)

  def body(state):                  # images that reached the tolerance stay as they are
    i, u, r, p, rs = state
    active = rs > limit
    ap = apply(p)
    step = jnp.where(active, safe(rs, dot(p, ap)), 0.0)
    u, r = u + step * p, r - step * ap
    rs_new = jnp.where(active, dot(r, r), rs)
    p = jnp.where(active, r + safe(rs_new, rs) * p, p)
    return i + 1, u, r, p, rs_new

  def running(state):
    return (state[0] < max_iter) & jnp.any(state[4] > limit)

  _, u, *_ = jax.lax.while_loop(running, body, (0, u, r, r, dot(r, r)))
  return u


def road_impute(images: jax.Array, removed: jax.Array, keys, noise: float = ROAD_NOISE,
                tol: float = 1e-4, max_iter: int = 1000) -> jax.Array:
  """Noisy linear imputation. images [N, H, W] (or [H, W] broadcast), removed bool [N, H, W],
  keys [N] (one noise key per image, so an image's result does not depend on its batch)
  -> images whose removed pixels hold the neighbours' linear interpolation plus N(0, noise^2).
  The solve stops at a relative residual `tol` per image (or after max_iter iterations).
  """
  removed = jnp.asarray(removed)
  images = jnp.broadcast_to(images, removed.shape).astype(jnp.float32)
  unknown = removed.astype(jnp.float32)
  filled = _solve_harmonic(images, unknown, tol, max_iter)
  draws = jax.vmap(lambda k: jax.random.normal(k, images.shape[1:], images.dtype))(keys)
  filled = filled + noise * draws
  return jnp.where(removed, filled, images)


def class_probability(logits: jax.Array, weights: jax.Array) -> jax.Array:
  """Mean softmax probability of class c over its pixel set: [B, H, W, K] -> [B, K] in [0, 1].
  Removal curves use it because it is bounded, unlike a sum of logits that can be near 0."""
  probs = jax.nn.softmax(logits, axis=-1)
  return jnp.sum(probs * weights, axis=(1, 2)) / jnp.maximum(jnp.sum(weights, axis=(1, 2)), 1e-12)


def curve_area(fractions, scores) -> np.ndarray:
  """Area under a removal curve relative to its start and to the fraction range (float64).
  scores [..., S] > 0 at fractions [S] (the first is 0, the unperturbed image): 1.0 for a score
  that never falls, lower = falls faster, above 1 = the class gains from the removal; NaN where
  the unperturbed score is 0 (a class with no pixels in the scan: nothing to remove)."""
  fractions = np.asarray(fractions, np.float64)
  norm = np.asarray(scores, np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    norm = norm / norm[..., :1]
  return np.trapezoid(norm, fractions, axis=-1) / (fractions[-1] - fractions[0])


def map_similarity(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman's rho of two maps (learning.uncertainty.spearman). NaN when the first map is
  constant (nothing to compare); 0 when only the second is (it shares no order)."""
  if np.ptp(a) == 0:
    return float("nan")
  if np.ptp(b) == 0:
    return 0.0
  return spearman(a, b)


def cascade_groups(module_names: Sequence[str]) -> List[List[str]]:
  """Top-level module names grouped by block and ordered from the output down: head, dec0,
  dec1, ..., deepest decoder level, deepest encoder level, ..., enc0."""
  def block(name):
    return name.split("_")[0]
  def rank(b):
    if b == CLASS_HEAD:
      return (0, 0)
    if b.startswith("dec"):
      return (1, int(b[3:]))
    if b.startswith("enc"):
      return (2, -int(b[3:]))
    return (3, 0)
  groups: Dict[str, List[str]] = {}
  for name in sorted(module_names):
    groups.setdefault(block(name), []).append(name)
  return [groups[b] for b in sorted(groups, key=rank)]


def randomised(variables: Dict, fresh: Dict, modules: Sequence[str]) -> Dict:
  """`variables` with every collection's entries for `modules` taken from `fresh` (a new
  initialisation: weights and BatchNorm statistics of an untrained layer)."""
  out = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    for m in modules:
      if m in tree:
        tree[m] = fresh[collection][m]
    out[collection] = tree
  return out
