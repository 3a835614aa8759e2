"""Grad-CAM family on intercepted activations, all classes from one forward pass.

The explained layers are not re-implemented: `nn.intercept_methods` wraps the named submodules'
`__call__`, records their output A and adds a zero perturbation to it. The gradient of a class
score with respect to that perturbation is dY^c/dA. One `jax.vjp` of the forward pass gives a
pullback; vmapping it over K class cotangents gives all K class gradients for every explained
layer at once. BatchNorm runs on running averages; no variable is changed.

Class score Y^c = sum of the class-c logits over a pixel set M_c:
  'all'       every pixel (the paper),
  'predicted' the pixels predicted as c (Seg-Grad-CAM),
  'box'       a user rectangle (row0, col0, row1, col1) in model-input pixels.

Maps (for activations A [h, w, C] and gradients G = dY^c/dA):
  gradcam    alpha_k = mean_ij G_ijk;        L = ReLU(sum_k alpha_k A_k)
  hirescam   L = ReLU(sum_k G_k * A_k)       (element-wise, no spatial averaging)
  gradcampp  weights_k = sum_ij a_ijk ReLU(G_ijk), a = G^2 / (2 G^2 + sum_ij A G^3)
             (Chattopadhay et al. 2018, with the exponential-score closed form)
Maps are upsampled bilinearly to the input size. Raw maps are kept; normalised maps divide by
each map's maximum (so they always peak at 1 and the raw maximum is the informative number).
"""

from typing import Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

METHODS = ("gradcam", "hirescam", "gradcampp")
TARGETS = ("all", "predicted", "box")


def _tap(layers, acts, perturbations=None):
  """An interceptor that records the output of each module whose path ('/'-joined names, e.g.
  'dec0_conv1') is in `layers`, and adds perturbations[path] to it when given."""
  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__":
      path = "/".join(context.module.path)
      if path in layers:
        acts[path] = out
        if perturbations is not None:
          out = out + perturbations[path].astype(out.dtype)
    return out
  return interceptor


def forward_with_taps(model, variables, x, layers: Sequence[str]):
  """Returns f(perturbations) -> (logits, activations) for jax.vjp, where perturbations is
  {layer: zeros like that layer's output}."""
  layers = tuple(layers)

  def f(perturbations):
    acts = {}
    with nn.intercept_methods(_tap(layers, acts, perturbations)):
      logits = model.apply(variables, x, train=False)
    return logits, acts

  return f


def activation_shapes(model, variables, x, layers):
  """{layer: ShapeDtypeStruct} of the tapped outputs (and checks that each layer exists)."""
  layers = tuple(layers)

  def shapes_only(xx):
    acts = {}
    with nn.intercept_methods(_tap(layers, acts)):
      model.apply(variables, xx, train=False)
    return acts

  shapes = jax.eval_shape(shapes_only, x)
  missing = [l for l in layers if l not in shapes]
  if missing:
    raise ValueError(f"unknown layer(s) {missing}; valid names follow "
                     "enc{i}_conv{j}, dec{i}_conv{j}, dec{i}_up, head")
  return shapes


def score_masks(logits: jax.Array, target: str, box: Tuple[int, int, int, int] = ()) -> jax.Array:
  """Pixel sets M_c as float weights [B, H, W, K] (constant w.r.t. the activations)."""
  b, h, w, k = logits.shape
  if target == "all":
    return jnp.ones(logits.shape, jnp.float32)
  if target == "predicted":
    return jax.nn.one_hot(jnp.argmax(jax.lax.stop_gradient(logits), -1), k, dtype=jnp.float32)
  if target == "box":
    if len(box) != 4:
      raise ValueError(f"target 'box' needs box=(row0, col0, row1, col1), got {box}")
    r0, c0, r1, c1 = box
    rows = (jnp.arange(h) >= r0) & (jnp.arange(h) < r1)
    cols = (jnp.arange(w) >= c0) & (jnp.arange(w) < c1)
    inside = (rows[:, None] & cols[None, :]).astype(jnp.float32)
    return jnp.broadcast_to(inside[None, :, :, None], logits.shape)
  raise ValueError(f"unknown target {target!r}; valid: {TARGETS}")


def class_gradients(model, variables, x, layers: Sequence[str], target: str = "all",
                    box=()):
  """One forward pass, K pullbacks. Returns (logits [B, H, W, K], acts {layer: [B, h, w, C]},
  grads {layer: [K, B, h, w, C]} with grads[l][c] = d(sum_b Y^c_b)/dA_l; images in a batch do
  not interact in inference mode, so the slice for image b is that image's own gradient)."""
  shapes = activation_shapes(model, variables, x, layers)
  # At least float32 (bfloat16 activations get float32 gradients); float64 stays float64.
  dtypes = {l: jnp.promote_types(s.dtype, jnp.float32) for l, s in shapes.items()}
  zeros = {l: jnp.zeros(s.shape, dtypes[l]) for l, s in shapes.items()}
  f = forward_with_taps(model, variables, x, layers)
  logits, pullback, acts = jax.vjp(f, zeros, has_aux=True)
  weights = score_masks(logits, target, box)                              # [B, H, W, K]
  k = logits.shape[-1]
  cotangents = (weights[None] * jnp.eye(k, dtype=jnp.float32)[:, None, None, None, :]
                ).astype(logits.dtype)
  (grads,) = jax.vmap(pullback)(cotangents)                               # {l: [K, B, h, w, C]}
  return logits, {l: a.astype(dtypes[l]) for l, a in acts.items()}, grads


def cam_from_gradients(acts: jax.Array, grads: jax.Array, method: str = "gradcam"):
  """acts [B, h, w, C], grads [K, B, h, w, C] -> (maps [K, B, h, w] >= 0, alpha [K, B, C])."""
  a = acts[None]
  if method == "gradcam":
    alpha = jnp.mean(grads, axis=(2, 3))                                   # [K, B, C]
    cam = jnp.einsum("kbhwc,kbc->kbhw", jnp.broadcast_to(a, grads.shape), alpha)
  elif method == "hirescam":
    alpha = jnp.mean(grads, axis=(2, 3))
    cam = jnp.sum(grads * a, axis=-1)
  elif method == "gradcampp":
    g2, g3 = grads ** 2, grads ** 3
    denom = 2 * g2 + jnp.sum(a * g3, axis=(2, 3), keepdims=True)
    coeff = jnp.where(denom != 0, g2 / jnp.where(denom != 0, denom, 1.0), 0.0)
    alpha = jnp.sum(coeff * jax.nn.relu(grads), axis=(2, 3))
    cam = jnp.einsum("kbhwc,kbc->kbhw", jnp.broadcast_to(a, grads.shape), alpha)
  else:
    raise ValueError(f"unknown CAM method {method!r}; valid: {METHODS}")
  return jax.nn.relu(cam), alpha


def upsample(maps: jax.Array, size: Tuple[int, int]) -> jax.Array:
  """[..., h, w] -> [..., H, W] bilinear."""
  return jax.image.resize(maps, maps.shape[:-2] + tuple(size), method="linear")


def normalise_maps(maps: jax.Array) -> jax.Array:
  """Divide each map by its maximum (all-zero maps stay zero)."""
  peak = jnp.max(maps, axis=(-2, -1), keepdims=True)
  return jnp.where(peak > 0, maps / jnp.where(peak > 0, peak, 1.0), 0.0)


def explain_batch(model, variables, x, layers: Sequence[str], method: str = "gradcam",
                  target: str = "all", box=()) -> Dict:
  """All-class maps for a batch. Returns logits [B, H, W, K] and per layer:
  raw [K, B, H, W] (upsampled, >= 0), norm [K, B, H, W] in [0, 1], alpha [K, B, C],
  act_max [B] (max raw activation of the layer)."""
  logits, acts, grads = class_gradients(model, variables, x, layers, target, box)
  out = {"logits": logits}
  for l in layers:
    cam, alpha = cam_from_gradients(acts[l], grads[l], method)
    raw = upsample(cam, x.shape[1:3])
    out[l] = {"raw": raw, "norm": normalise_maps(raw), "alpha": alpha,
              "act_max": jnp.max(acts[l], axis=(1, 2, 3))}
  return out


def class_scores(logits: jax.Array, weights: jax.Array) -> jax.Array:
  """Y^c = sum over the pixel set of the class-c logits: [B, H, W, K] x weights -> [B, K]."""
  return jnp.sum(logits * weights, axis=(1, 2))


def localisation(raw: jax.Array, regions: jax.Array, valid: jax.Array):
  """Share of each class map's mass inside that class's region, and the share expected from
  area alone. raw [K, H, W] >= 0, regions int [H, W] (class per pixel), valid bool [H, W].
  Returns (mass_share [K], area_share [K]); NaN where a map is all zero or no pixel is valid."""
  k = raw.shape[0]
  inside = (regions[None] == jnp.arange(k)[:, None, None]) & valid[None]      # [K, H, W]
  mass = jnp.sum(raw * valid[None], axis=(1, 2))
  mass_share = jnp.where(mass > 0, jnp.sum(raw * inside, axis=(1, 2)) / jnp.where(mass > 0, mass, 1), jnp.nan)
  n_valid = jnp.sum(valid)
  area_share = jnp.where(n_valid > 0, jnp.sum(inside, axis=(1, 2)) / jnp.maximum(n_valid, 1), jnp.nan)
  return mass_share, area_share


def deletion_images(image: jax.Array, ranking: jax.Array, fractions: jax.Array,
                    fill: jax.Array) -> jax.Array:
  """Images with the top `fraction` of pixels by `ranking` (higher = deleted first) replaced
  by `fill`. image, ranking [H, W]; fractions [S] -> [S, H, W]."""
  n = image.size
  order = jnp.argsort(-ranking.ravel(), stable=True)
  position = jnp.empty(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
  count = jnp.round(fractions * n).astype(jnp.int32)
  deleted = position.reshape(image.shape)[None] < count[:, None, None]
  return jnp.where(deleted, fill, image[None])


def class_probability(logits: jax.Array, weights: jax.Array) -> jax.Array:
  """Mean softmax probability of class c over its pixel set: [B, H, W, K] -> [B, K] in [0, 1].
  The deletion curves use it because it is bounded, unlike a sum of logits that can be near 0."""
  probs = jax.nn.softmax(logits, axis=-1)
  return jnp.sum(probs * weights, axis=(1, 2)) / jnp.maximum(jnp.sum(weights, axis=(1, 2)), 1e-12)


def curve_area(fractions: jax.Array, scores: jax.Array) -> jax.Array:
  """Area under a deletion curve relative to its start, scores [..., S] > 0 for fractions [S]
  from 0 to 1: 1.0 for a score that never falls, lower = falls faster (more faithful map)."""
  norm = scores / scores[..., :1]
  dx = jnp.diff(fractions).reshape((1,) * (norm.ndim - 1) + (-1,))
  return jnp.sum(0.5 * (norm[..., 1:] + norm[..., :-1]) * dx, axis=-1)   # trapezoid rule
