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
  ablation   gradient-free (Ablation-CAM, Desai & Ramaswamy 2020): channel k is set to zero
             and the forward pass rerun; alpha_k = (Y^c - Y^c_{-k}) / sum_ij A_ijk, the secant
             slope of the score along the ablation (it equals Grad-CAM's alpha where the score
             is linear in A, e.g. for the layer feeding the 1x1 head); L = ReLU(sum_k alpha_k A_k).
             Costs one forward pass of the layers after the explained one per channel.
Spatial means are taken in two stages (over columns, then rows) so that a float32 mean over
~1e5 pixels keeps ~1e-7 relative error.
Maps are upsampled bilinearly to the input size. Raw maps are kept; normalised maps divide by
each map's maximum (so they always peak at 1 and the raw maximum is the informative number).
Given the scan's extent in a padded input (explain: the rows and columns that hold the scan),
class scores count only its pixels and maps are zero beyond it (scan_pixels, scan_maps).
"""

from typing import Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

METHODS = ("gradcam", "hirescam", "gradcampp", "ablation")
GRADIENT_METHODS = METHODS[:3]
LINEAR_METHODS = METHODS[:2]      # maps linear in the gradient before the ReLU (ensembles)
METHOD_NAMES = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM", "gradcampp": "Grad-CAM++",
                "ablation": "Ablation-CAM"}          # as the literature and our figures write them
ABLATION_CHUNK = 8                # channels Ablation-CAM ablates per pass unless told otherwise
TARGETS = ("all", "predicted", "box")
TARGET_TEXT = {"all": "each class's score summed over every pixel",     # for figure titles
               "predicted": "each class's score summed over the pixels predicted as it",
               "box": "each class's score summed over the given box"}


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


def scan_pixels(shape: Tuple[int, int], extent=None) -> jax.Array:
  """bool [H, W]: the pixels of a model input of `shape` that hold the scan, its first
  extent = (rows, cols) (the rest pads it to the network's multiple; ints or a traced int
  array, so that scans of one padded size share a compilation); all with extent None."""
  h, w = shape
  rows, cols = (h, w) if extent is None else extent
  return (jnp.arange(h) < rows)[:, None] & (jnp.arange(w) < cols)[None, :]


def score_masks(logits: jax.Array, target: str, box: Tuple[int, int, int, int] = (),
                extent=None) -> jax.Array:
  """Pixel sets M_c as float weights [B, H, W, K] (constant w.r.t. the activations), inside the
  scan's extent (scan_pixels) when one is given: padding is no class's evidence."""
  if extent is not None:
    inside = scan_pixels(logits.shape[1:3], extent)[None, :, :, None]
    return score_masks(logits, target, box) * inside.astype(jnp.float32)
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
                    box=(), weights=None, extent=None):
  """One forward pass, K pullbacks. Returns (logits [B, H, W, K], acts {layer: [B, h, w, C]},
  grads {layer: [K, B, h, w, C]} with grads[l][c] = d(sum_b Y^c_b)/dA_l; images in a batch do
  not interact in inference mode, so the slice for image b is that image's own gradient).
  weights: the pixel sets [B, H, W, K] of the class scores, instead of score_masks(target, box,
  extent)."""
  shapes = activation_shapes(model, variables, x, layers)
  # At least float32 (bfloat16 activations get float32 gradients); float64 stays float64.
  dtypes = {l: jnp.promote_types(s.dtype, jnp.float32) for l, s in shapes.items()}
  zeros = {l: jnp.zeros(s.shape, dtypes[l]) for l, s in shapes.items()}
  f = forward_with_taps(model, variables, x, layers)
  logits, pullback, acts = jax.vjp(f, zeros, has_aux=True)
  if weights is None:
    weights = score_masks(logits, target, box, extent)                    # [B, H, W, K]
  k = logits.shape[-1]
  cotangents = (weights[None] * jnp.eye(k, dtype=jnp.float32)[:, None, None, None, :]
                ).astype(logits.dtype)
  (grads,) = jax.vmap(pullback)(cotangents)                               # {l: [K, B, h, w, C]}
  return logits, {l: a.astype(dtypes[l]) for l, a in acts.items()}, grads


def spatial_mean(g: jax.Array) -> jax.Array:
  """Mean over the two spatial axes of [K, B, h, w, C], summed over columns then rows."""
  return jnp.sum(jnp.sum(g, axis=3), axis=2) / (g.shape[2] * g.shape[3])


def weighted_sum(acts: jax.Array, alpha: jax.Array) -> jax.Array:
  """sum_k alpha_k A_k: acts [B, h, w, C], alpha [K, B, C] -> [K, B, h, w]."""
  return jnp.einsum("bhwc,kbc->kbhw", acts, alpha)


def cam_before_relu(acts: jax.Array, grads: jax.Array, method: str = "gradcam"):
  """acts [B, h, w, C], grads [K, B, h, w, C] -> (sum_k weight_k A_k [K, B, h, w] before the
  ReLU, alpha [K, B, C])."""
  a = acts[None]
  if method == "gradcam":
    alpha = spatial_mean(grads)                                            # [K, B, C]
    return weighted_sum(acts, alpha), alpha
  if method == "hirescam":
    return jnp.sum(grads * a, axis=-1), spatial_mean(grads)
  if method == "gradcampp":
    g2, g3 = grads ** 2, grads ** 3
    denom = 2 * g2 + jnp.sum(jnp.sum(a * g3, axis=3, keepdims=True), axis=2, keepdims=True)
    coeff = jnp.where(denom != 0, g2 / jnp.where(denom != 0, denom, 1.0), 0.0)
    alpha = jnp.sum(jnp.sum(coeff * jax.nn.relu(grads), axis=3), axis=2)
    return weighted_sum(acts, alpha), alpha
  raise ValueError(f"unknown CAM method {method!r}; valid: {METHODS}")


def cam_from_gradients(acts: jax.Array, grads: jax.Array, method: str = "gradcam"):
  """acts [B, h, w, C], grads [K, B, h, w, C] -> (maps [K, B, h, w] >= 0, alpha [K, B, C])."""
  cam, alpha = cam_before_relu(acts, grads, method)
  return jax.nn.relu(cam), alpha


def upsample(maps: jax.Array, size: Tuple[int, int]) -> jax.Array:
  """[..., h, w] -> [..., H, W] bilinear."""
  return jax.image.resize(maps, maps.shape[:-2] + tuple(size), method="linear")


def scan_maps(raw: jax.Array, extent=None) -> Tuple[jax.Array, jax.Array]:
  """(raw, norm) of upsampled maps [..., H, W]: zero outside the scan's extent (scan_pixels),
  so that padding neither sets the normalisation nor ranks in removal; norm divides by the
  maximum over the scan."""
  if extent is not None:
    raw = jnp.where(scan_pixels(raw.shape[-2:], extent), raw, 0.0)
  return raw, normalise_maps(raw)


def normalise_maps(maps: jax.Array) -> jax.Array:
  """Divide each map by its maximum (all-zero maps stay zero)."""
  peak = jnp.max(maps, axis=(-2, -1), keepdims=True)
  return jnp.where(peak > 0, maps / jnp.where(peak > 0, peak, 1.0), 0.0)


def top_level_order(model, variables, x) -> Tuple[str, ...]:
  """Names of the model's top-level submodules in the order a forward pass calls them."""
  order = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and len(context.module.path) == 1:
      order.append(context.module.path[0])
    return next_fun(*args, **kwargs)

  def run(xx):
    with nn.intercept_methods(record):
      return model.apply(variables, xx, train=False)

  jax.eval_shape(run, x)
  return tuple(dict.fromkeys(order))


def forward_from(model, variables, x, cached: Dict, layer: str, delta: jax.Array):
  """Logits when `layer`'s output is cached[layer] + delta and every module in `cached` returns
  its cached output instead of computing it (the upstream part of the network is not rerun;
  parameter-free steps such as pooling are). x and the cached arrays share the batch size."""
  def replay(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and len(context.module.path) == 1:
      name = context.module.path[0]
      if name == layer:
        return cached[name] + delta.astype(cached[name].dtype)
      if name in cached:
        return cached[name]
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(replay):
    return model.apply(variables, x, train=False)


def ablation_alpha(model, variables, x, layer: str, order: Sequence[str], acts: Dict,
                   weights: jax.Array, chunk: int = ABLATION_CHUNK) -> jax.Array:
  """Ablation-CAM weights [K, B, C] for one layer. acts holds the outputs of `order` up to and
  including `layer` ([B, ...] each); weights [B, H, W, K] the pixel sets of the class scores.
  Channels are ablated `chunk` at a time (a batch of chunk * B images)."""
  cached = {n: acts[n] for n in order[:order.index(layer) + 1]}
  a = cached[layer]                                                        # [B, h, w, C]
  c = a.shape[-1]
  base = class_scores(forward_from(model, variables, x, cached, layer, jnp.zeros_like(a)),
                      weights)                                             # [B, K]

  def ablated_score(k):
    delta = -a * jax.nn.one_hot(k, c, dtype=a.dtype)[None, None, None, :]
    return class_scores(forward_from(model, variables, x, cached, layer, delta), weights)

  drops = base[None] - jax.lax.map(ablated_score, jnp.arange(c),
                                   batch_size=max(1, min(int(chunk), c)))    # [C, B, K]
  mass = jnp.sum(jnp.sum(a, axis=2), axis=1)                               # [B, C]
  m = mass.T[:, :, None]                                                   # [C, B, 1]
  slope = jnp.where(m != 0, drops / jnp.where(m != 0, m, 1.0), 0.0)
  return jnp.transpose(slope, (2, 1, 0))                                   # [K, B, C]


def explain_batch(model, variables, x, layers: Sequence[str], method: str = "gradcam",
                  target: str = "all", box=(), weights=None,
                  ablation_chunk: int = ABLATION_CHUNK, extent=None) -> Dict:
  """All-class maps for a batch. Returns logits [B, H, W, K] and per layer:
  raw [K, B, H, W] (upsampled, >= 0), norm [K, B, H, W] in [0, 1], alpha [K, B, C],
  act_max [B] (max raw activation of the layer). weights: see class_gradients;
  ablation_chunk: channels Ablation-CAM ablates per pass (see ablation_alpha); extent: (rows,
  cols) of x that hold the scans (scan_maps, score_masks), None for all of x."""
  if method == "ablation":
    order = top_level_order(model, variables, x)
    deepest = max(order.index(l) for l in activation_shapes(model, variables, x, layers))
    logits, acts = forward_with_taps(model, variables, x, order[:deepest + 1])(None)
    if weights is None:
      weights = score_masks(logits, target, box, extent)
    alphas = {l: ablation_alpha(model, variables, x, l, order, acts, weights, ablation_chunk)
              for l in layers}
    cams = {l: jax.nn.relu(weighted_sum(acts[l], alphas[l])) for l in layers}
  else:
    logits, acts, grads = class_gradients(model, variables, x, layers, target, box, weights,
                                          extent)
    results = {l: cam_from_gradients(acts[l], grads[l], method) for l in layers}
    cams = {l: r[0] for l, r in results.items()}
    alphas = {l: r[1] for l, r in results.items()}
  out = {"logits": logits}
  for l in layers:
    raw, norm = scan_maps(upsample(cams[l], x.shape[1:3]), extent)
    out[l] = {"raw": raw, "norm": norm, "alpha": alphas[l],
              "act_max": jnp.max(acts[l], axis=(1, 2, 3))}
  return out


def ensemble_views(members, flip: bool = False):
  """[(model, variables, mirrored)]: each member on the input, and with flip on its mirror."""
  return [(m, v, False) for m, v in members] + ([(m, v, True) for m, v in members] if flip
                                                else [])


def seen(a, mirrored: bool, axis: int):
  """What a mirrored view sees (`a` mirrored along the columns at `axis`), and back."""
  return jnp.flip(a, axis) if mirrored else a


def ensemble_logits(members, x, flip: bool = False) -> jax.Array:
  """An ensemble's logits [B, H, W, K]: the log of its views' mean softmax (softmax of it is
  the averaged probabilities). members: [(model, variables)]."""
  return jnp.log(jnp.mean(jnp.stack([
      seen(jax.nn.softmax(m.apply(v, seen(x, mirrored, 2), train=False), -1), mirrored, 2)
      for m, v, mirrored in ensemble_views(members, flip)]), axis=0))


def ensemble_maps(members, x, layers: Sequence[str], method: str = "gradcam",
                  target: str = "all", box=(), flip: bool = False, extent=None) -> Dict:
  """The maps of an ensemble, explained as one wide network. members: [(model, variables)];
  each is a view, and with flip also on the mirrored input (its outputs mirrored back). The
  ensemble's probabilities are the mean of the views' softmax outputs; its logits are their
  log (softmax(log p) = p), so target 'predicted' and removal scores use the averaged output.
  Its class score is the mean of the views' class scores over one pixel set per class (the
  ensemble's), and its layer is the views' activations side by side (the mirrored ones
  mirrored back): the gradient with respect to one view's part is that view's own gradient
  divided by the number of views V. For a method linear in the gradient before its ReLU
  (LINEAR_METHODS) the map is therefore ReLU(mean of the views' maps before their ReLU), alpha
  [K, B, V * C] the views' alphas / V side by side and act_max the largest activation of any
  view; extent as explain_batch's. Returns what explain_batch returns."""
  if method not in LINEAR_METHODS:
    raise ValueError(f"an ensemble is explained with a method linear in the gradient "
                     f"{LINEAR_METHODS}, not {method!r}")
  views = ensemble_views(members, flip)
  logits = ensemble_logits(members, x, flip)
  weights = score_masks(logits, target, box, extent)
  pre = {l: 0.0 for l in layers}
  alphas, act_max = {l: [] for l in layers}, {l: [] for l in layers}
  for m, v, mirrored in views:
    _, acts, grads = class_gradients(m, v, seen(x, mirrored, 2), layers,
                                     weights=seen(weights, mirrored, 2))
    for l in layers:
      cam, alpha = cam_before_relu(acts[l], grads[l] / len(views), method)
      pre[l] = pre[l] + seen(cam, mirrored, -1)
      alphas[l].append(alpha)
      act_max[l].append(jnp.max(acts[l], axis=(1, 2, 3)))
  out = {"logits": logits}
  for l in layers:
    raw, norm = scan_maps(upsample(jax.nn.relu(pre[l]), x.shape[1:3]), extent)
    out[l] = {"raw": raw, "norm": norm, "alpha": jnp.concatenate(alphas[l], -1),
              "act_max": jnp.max(jnp.stack(act_max[l]), axis=0)}
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
