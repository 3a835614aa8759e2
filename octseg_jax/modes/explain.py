"""--mode=explain: per-class CAMs, Table-3 statistics, and optional faithfulness and sanity checks.

Per input scan SCAN (explain.scan_indices of each file, or up to explain.max_scans):
SCAN_cam.npz (input x and, per layer, raw and normalised maps [K, h, w] at model-input
resolution; where x came from: scan rows band_top to band_top + band_rows - 1 of scan_rows,
all scan_cols columns, resized to x[:input_rows, :input_cols], the rest of x padding, where
the maps are 0: class scores, normalisation, the maps' statistics and removal curves count the
scan's pixels only; the network still sees the padding, so alpha and the layer's max
activation include it) and
SCAN_cam.png (paper Figure 6, the model's input band drawn with the scan's pixels square, with
scale bars at the file's pixel size or --pixel_um), directly in --output; for the whole run
cam_stats.json and cam_stats.md.

By default only the maps and their statistics are computed (one forward pass and K pullbacks
per scan). --cam_faithfulness=deletion|road|all adds removal curves (octseg_jax.cam.faithfulness),
all of a scan's perturbed images scored in batches of classes x steps; --cam_sanity adds the
weight-randomisation check, once per run on the first explained scan.
"""

import functools
import os
import time
from typing import Dict, List

import jax
import jax.numpy as jnp
import numpy as np

from octseg_jax.anatomy import IGNORE
from octseg_jax.cam import faithfulness
from octseg_jax.cam import gradcam
from octseg_jax.config import schema
from octseg_jax.outputs import plots
from octseg_jax.data import preprocessing
from octseg_jax.geometry import boundaries as geom
from octseg_jax.outputs import report
from octseg_jax.data import inputs
from octseg_jax.errors import InputError
from octseg_jax.models.segnet import CLASS_HEAD
from octseg_jax.outputs.cam_report import (EVIDENCE_FILE, heldout_passed, stats_markdown,
                                           summarise)
from octseg_jax.outputs.atomic import write_json, write_npz, write_text
from octseg_jax.outputs.folder_run import RunOutputs, check_output_folder
from octseg_jax.runtime.progress import Progress
from octseg_jax.serving import inference
from octseg_jax.serving.workdir import read_json

ROAD_MAX_FRACTION = 0.9     # ROAD needs kept pixels to impute from


def model_box(box, placement: preprocessing.Placement, scan: str = "the scan"):
  """(row0, col0, row1, col1) in raw-scan pixels -> model-input pixels (integer bounds);
  InputError naming `scan` where the box misses the model's view of it."""
  if not len(box):
    return ()
  r0, c0, r1, c1 = box
  sy = placement.model_rows / placement.band_rows
  sx = placement.model_cols / placement.width
  to_row = lambda r: int(np.clip(round((r - placement.top) * sy), 0, placement.model_rows))
  to_col = lambda c: int(np.clip(round(c * sx), 0, placement.model_cols))
  out = (to_row(r0), to_col(c0), to_row(r1), to_col(c1))
  if out[2] <= out[0] or out[3] <= out[1]:
    raise InputError(f"--cam_box {tuple(box)}: empty inside the model's view of {scan} (scan "
                     f"rows {placement.top}-{placement.top + placement.band_rows}, columns "
                     f"0-{placement.width})")
  return out


def chosen_scans(scans, cfg) -> List[int]:
  """The positions in `scans` that explain explains: explain.scan_indices (each once), or the
  first explain.max_scans. InputError where the file has no scan at a chosen position."""
  wanted = list(dict.fromkeys(int(i) for i in cfg.scan_indices))
  if not wanted:
    return list(range(min(len(scans), int(cfg.max_scans))))
  missing = sorted({i for i in wanted if i >= len(scans)})
  if missing:
    raise InputError(f"--config.explain.scan_indices={','.join(map(str, cfg.scan_indices))}: "
                     f"{scans.source} has {report.count(len(scans), 'scan')} (positions 0-"
                     f"{len(scans) - 1}), none at {', '.join(map(str, missing))}")
  return wanted


def with_chosen_scans(sets, cfg, run_out, single: bool) -> list:
  """The (ScanSet, scale) pairs of `sets` that hold every chosen scan (chosen_scans). A single
  input file without one stops the run (InputError); a folder's such files fail (errors.csv)
  and the others are explained."""
  kept = []
  for scans, scale in sets:
    try:
      chosen_scans(scans, cfg)
      kept.append((scans, scale))
    except InputError as e:
      if single:
        raise
      inputs.report_failure(run_out.failed, scans.source, e)
  return kept


def refuse_box_outside_views(sets, trained, box) -> None:
  """InputError (model_box) before anything is written when --cam_box misses the model's view
  of a scan the run would explain."""
  for scans, _ in sets:
    for i in chosen_scans(scans, trained.config.explain):
      model_box(box, inference.prepare(trained, scans.images[i])[2],
                f"{scans.names[i]} of {scans.source}")


def box_in_view(box, placement: preprocessing.Placement) -> tuple:
  """(row0, col0, row1, col1) in scan pixels, cut to the model's view of the scan (its band of
  rows, all columns): the part of the box whose pixels the maps explain (model_box)."""
  r0, c0, r1, c1 = (int(v) for v in box)
  top, stop = placement.top, placement.top + placement.band_rows
  return (min(max(r0, top), stop), min(max(c0, 0), placement.width),
          min(max(r1, top), stop), min(max(c1, 0), placement.width))


def removal_orders(kind: str, maps: np.ndarray, random_rank: np.ndarray):
  """Rankings [R, h, w] and, per order, the ranking index of each class's curve.
  maps [K, h, w]; kind 'road' -> MoRF, LeRF, random; 'deletion' -> map, random."""
  k = maps.shape[0]
  if kind == "road":
    rankings = np.concatenate([maps, -maps, random_rank[None]])
    return rankings, {"morf": np.arange(k), "lerf": k + np.arange(k), "random": np.full(k, 2 * k)}
  rankings = np.concatenate([maps, random_rank[None]])
  return rankings, {"map": np.arange(k), "random": np.full(k, k)}


def per_image_bytes(model, variables, shape) -> int:
  """Upper bound of one image's inference memory: every top-level module output kept, plus
  the removal and imputation buffers."""
  x = jnp.zeros((1,) + tuple(shape))
  order = gradcam.top_level_order(model, variables, x)
  shapes = gradcam.activation_shapes(model, variables, x, order)
  acts = sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in shapes.values())
  return acts + 8 * int(np.prod(shape)) * 4


_DEFAULTS = schema.default_config().explain    # the Explainer's defaults are the config's


class Explainer:
  """Jitted all-class explanation, batched removal scoring and the randomisation check for one
  model or an ensemble, and settings. members: [(model, variables)], one for a single model;
  several, or flip, explain the ensemble's averaged output (gradcam.ensemble_maps)."""

  def __init__(self, members, layers, method, target,
               deletion_steps: int = _DEFAULTS.deletion_steps,
               road_steps: int = _DEFAULTS.road_steps, road_noise: float = _DEFAULTS.road_noise,
               batch_mb: float = _DEFAULTS.removal_batch_mb, flip: bool = False):
    self.models = [m for m, _ in members]
    # One placement for every variable (restored checkpoints are committed to a device, a fresh
    # init is not), so that the sanity check's mixtures reuse one compilation.
    self.device = jax.devices()[0]
    self.model = members[0][0]
    self.variables = [jax.device_put(v, self.device) for _, v in members]
    self.flip, self.num_views = bool(flip), len(members) * (2 if flip else 1)
    self.layers, self.method, self.target = tuple(layers), method, target
    self.fractions = {"deletion": np.linspace(0.0, 1.0, int(deletion_steps) + 1),
                      "road": np.linspace(0.0, ROAD_MAX_FRACTION, int(road_steps) + 1)}
    self.road_noise, self.batch_mb = float(road_noise), float(batch_mb)
    self._explain = jax.jit(self._maps, static_argnums=(2, 3))
    self._chunk = jax.jit(self._score_chunk, static_argnums=(0,))

  def _maps(self, variables, x, box, ablation_chunk, extent):
    if self.num_views == 1:
      return gradcam.explain_batch(self.model, variables[0], x, self.layers, self.method,
                                   self.target, box, ablation_chunk=ablation_chunk,
                                   extent=extent)
    return gradcam.ensemble_maps(list(zip(self.models, variables)), x, self.layers,
                                 self.method, self.target, box, self.flip, extent)

  def logits(self, variables, x):
    """The model's logits [B, h, w, K]; an ensemble's: the log of its views' mean softmax."""
    if self.num_views == 1:
      return self.model.apply(variables[0], x, train=False)
    return gradcam.ensemble_logits(list(zip(self.models, variables)), x, self.flip)

  def explain(self, x: np.ndarray, box=(), variables=None, extent=()):
    """Maps for a batch x [B, h, w] (see gradcam.explain_batch); variables: one per member;
    extent: (rows, cols) of x that hold the scans (the rest pads them; () for all of x),
    traced: scans padded to one size share a compilation.
    Ablation-CAM ablates as many channels per pass as explain.removal_batch_mb allows."""
    chunk = (max(1, self.batch_size(x.shape[1:]) // x.shape[0]) if self.method == "ablation"
             else 0)
    try:
      return self._explain(self.variables if variables is None else variables,
                           jnp.asarray(x), tuple(box), chunk,
                           jnp.asarray(extent, jnp.int32) if len(extent) else None)
    except ValueError as e:
      raise self._bad_layers(e) from None

  def _bad_layers(self, e: ValueError, option: str = "--cam_layers") -> InputError:
    return InputError(f"{option} {list(self.layers)}: {e}")

  def check_layers(self, option: str = "--cam_layers") -> None:
    """InputError naming `option` (where the layers came from) when a layer is not one of the
    network's: shapes only (nothing is computed), so that a misspelt layer fails before any
    file is read."""
    side = preprocessing.input_multiple(self.model.widths)   # the smallest input it takes
    try:
      gradcam.activation_shapes(self.model, self.variables[0], jnp.zeros((1, side, side)),
                                self.layers)
    except ValueError as e:
      raise self._bad_layers(e, option) from None

  def batch_size(self, shape) -> int:
    """Perturbed images per forward pass under the memory limit explain.removal_batch_mb."""
    need = per_image_bytes(self.model, self.variables[0], shape)
    if self.num_views > 1:              # the views' probabilities, held until averaged
      need += self.num_views * int(np.prod(shape)) * 4 * int(self.model.num_classes)
    return max(1, int(self.batch_mb * 2 ** 20 // need))

  def _score_chunk(self, kind, x, rankings, fractions, job_ids, tiebreak, weights, key, valid):
    """Class probabilities [B, K] of B perturbed images: image b removes the top fractions[b]
    of rankings[b] from the valid pixels of x (deletion: filled with their mean; road: noisy
    linear imputation)."""
    removed = jax.vmap(lambda r, f: faithfulness.removal_masks(r, tiebreak, f[None], valid)[0])(
        rankings, fractions)
    if kind == "road":
      keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(job_ids)
      images = faithfulness.road_impute(x, removed, keys, self.road_noise)
    else:
      images = faithfulness.deletion_images(x, removed, jnp.sum(x * valid) / jnp.sum(valid))
    logits = self.logits(self.variables, images)
    return faithfulness.class_probability(logits, weights[None])

  def removal_probabilities(self, kind: str, x, rankings, tiebreak, weights, key,
                            batch: int, valid) -> np.ndarray:
    """Probabilities [R, S, K] for every ranking r and removal fraction s > 0, scored `batch`
    images at a time, at most all of them at once (the last batch padded so that one
    compilation serves all)."""
    fractions = self.fractions[kind][1:]
    jobs = [(r, s) for r in range(len(rankings)) for s in range(len(fractions))]
    batch = min(batch, len(jobs))         # no batch larger than the work (padding is work too)
    out = np.zeros((len(jobs), weights.shape[-1]), np.float32)
    for start in range(0, len(jobs), batch):
      chunk = jobs[start:start + batch]
      idx = chunk + [chunk[-1]] * (batch - len(chunk))
      ids = np.arange(start, start + batch)
      probs = self._chunk(kind, jnp.asarray(x), jnp.asarray(rankings[[r for r, _ in idx]]),
                          jnp.asarray(fractions[[s for _, s in idx]], jnp.float32),
                          jnp.asarray(ids, jnp.int32), tiebreak, jnp.asarray(weights), key,
                          valid)
      out[start:start + len(chunk)] = np.asarray(probs)[:len(chunk)]
    return out.reshape(len(rankings), len(fractions), -1)

  def removal(self, kind: str, x: np.ndarray, maps: np.ndarray, weights: np.ndarray,
              base: np.ndarray, key, batch: int = 0, orders=None, extent=()) -> Dict:
    """Removal curves of one scan for every class. x [h, w]; maps [K, h, w]; weights [h, w, K];
    base [K] the unperturbed probabilities; orders: a subset of the kind's orders (default
    all); extent: (rows, cols) of x that hold the scan, the only pixels removed (fractions of
    them). Returns per order the curves [K, S + 1] (the first point is `base`) and their areas
    [K], and the fractions."""
    k_tie, k_rand, k_noise = jax.random.split(key, 3)
    tiebreak = jax.random.uniform(k_tie, x.shape)
    rankings, all_orders = removal_orders(kind, np.asarray(maps),
                                          np.asarray(jax.random.uniform(k_rand, x.shape)))
    orders = {o: all_orders[o] for o in (orders or all_orders)}
    used = np.unique(np.concatenate(list(orders.values())))
    rankings = rankings[used]
    orders = {o: np.searchsorted(used, rows) for o, rows in orders.items()}
    probs = self.removal_probabilities(kind, x, rankings, tiebreak, weights, k_noise,
                                       batch or self.batch_size(x.shape),
                                       gradcam.scan_pixels(x.shape, extent or None))
    classes = np.arange(maps.shape[0])
    fractions = self.fractions[kind]
    out = {"fractions": fractions}
    for order, rows in orders.items():
      curves = np.concatenate([base[:, None], probs[rows, :, classes]], axis=1)    # [K, S + 1]
      out[f"{order}_probability"] = curves
      out[f"{order}_area"] = faithfulness.curve_area(fractions, curves)
    return out

  def sanity(self, x: np.ndarray, box, trained: Dict, region, key) -> Dict:
    """Spearman correlation [stages, K] per layer and mode between the trained model's raw maps
    (trained {layer: [K, h, w]}) and the maps after re-initialising module groups: 'cascade'
    (head, then each block down to the input, cumulatively) and 'independent' (each alone).
    An ensemble's members are re-initialised together, each from its own key.
    region: (rows, cols) of the model input that hold the scan."""
    fresh = [jax.device_put(_fresh_variables(m, key if i == 0 else jax.random.fold_in(key, i),
                                             jnp.asarray(x[None])), self.device)
             for i, m in enumerate(self.models)]
    names = [n for n in gradcam.top_level_order(self.model, self.variables[0],
                                                jnp.asarray(x[None]))
             if n in self.variables[0]["params"]]
    groups = faithfulness.cascade_groups(names)
    rows, cols = region
    result = {"stages": ["+".join(g) for g in groups]}
    for mode in ("cascade", "independent"):
      sims = {l: [] for l in self.layers}
      for i, group in enumerate(groups):
        modules = [m for g in groups[:i + 1] for m in g] if mode == "cascade" else group
        out = self.explain(x[None], box, [faithfulness.randomised(v, f, modules)
                                          for v, f in zip(self.variables, fresh)], region)
        for l in self.layers:
          maps = np.asarray(out[l]["raw"][:, 0])
          sims[l].append([faithfulness.map_similarity(trained[l][c][:rows, :cols], maps[c][:rows, :cols])
                          for c in range(maps.shape[0])])
      for l in self.layers:
        result.setdefault(l, {})[mode] = np.asarray(sims[l])
    return result


@functools.partial(jax.jit, static_argnums=0)
def _fresh_variables(model, key, x):
  """A new initialisation of `model`: compiled, not op by op, and once for equal members."""
  return model.init(key, x, train=False)


def scan_statistics(out: Dict, layer: str, b: int, regions, valid, extent) -> Dict:
  """Table-3 statistics and localisation for image b of a batch result, one layer, over the
  scan's extent (rows, cols) of the model input (the rest pads it)."""
  r = out[layer]
  mass, area = gradcam.localisation(r["raw"][:, b], jnp.asarray(regions), jnp.asarray(valid))
  alpha = np.asarray(r["alpha"][:, b], np.float64)
  rows, cols = extent
  return {"alpha_mean": alpha.mean(axis=-1), "alpha": alpha,
          "max_raw": np.asarray(jnp.max(r["raw"][:, b, :rows, :cols], axis=(1, 2))),
          "mean_norm_intensity": np.asarray(r["norm"][:, b, :rows, :cols],
                                            np.float64).mean(axis=(1, 2)),
          "activation_max": float(r["act_max"][b]),
          "mass_in_region": np.asarray(mass), "area_share": np.asarray(area)}


def explain_scan(explainer: Explainer, x, y, place, sbox, kinds, key) -> Dict:
  """Maps, statistics and removal curves of one prepared scan, the share of its columns (model
  input) that predict would measure (geometry.labelling_support) and whether it is low."""
  t0 = time.perf_counter()
  extent = (place.model_rows, place.model_cols)        # x beyond it pads the scan
  out = explainer.explain(x[None], sbox, extent=extent)
  logits = out["logits"]
  jax.block_until_ready(logits)
  timing = {"maps_s": time.perf_counter() - t0}
  pred = np.asarray(jnp.argmax(logits[0], -1))
  support = geom.labelling_support(pred[:extent[0], :extent[1]])
  regions = y if y is not None else pred
  valid = (regions != IGNORE)
  valid[place.model_rows:], valid[:, place.model_cols:] = False, False
  weights = np.asarray(gradcam.score_masks(logits, explainer.target, sbox, extent))[0]
  base = np.asarray(faithfulness.class_probability(logits, weights[None]))[0]
  t0 = time.perf_counter()
  stats = {layer: scan_statistics(out, layer, 0, regions, valid, extent)
           for layer in explainer.layers}
  timing["statistics_s"] = time.perf_counter() - t0
  if kinds:
    t0 = time.perf_counter()
    for layer in explainer.layers:
      maps = np.asarray(out[layer]["norm"][:, 0])
      for kind in kinds:
        key, sub = jax.random.split(key)
        stats[layer][kind] = explainer.removal(kind, x, maps, weights, base, sub,
                                               extent=extent)
    timing["removal_s"] = time.perf_counter() - t0
  return {"out": out, "stats": stats, "timing": timing, "supported_share": float(support.mean()),
          "low_support": bool(geom.low_support(support))}


def model_pixel_um(place, scale: Dict):
  """(row um, column um or None) of one model-input pixel: it covers band_rows / model_rows
  scan rows and width / model_cols scan columns."""
  col = scale["col_um"]
  return (scale["row_um"] * place.band_rows / place.model_rows,
          None if col is None else col * place.width / place.model_cols)


def write_scan(cam_npz: str, cam_png: str, x, out: Dict, layers, place, title: str,
               scale: Dict, model: str = "", checks=None, box=()) -> None:
  """SCAN_cam.npz and SCAN_cam.png (the input band with the scan's pixels drawn square, with
  scale bars from `scale`, inputs.resolve_scale's pixel size of the scan; each class marked by
  `checks`, cam_report.heldout_passed; `box`, --cam_box in scan pixels, dashed and named as
  far as it lies in the model's view)."""
  write_npz(cam_npz, x=x, band_top=place.top, band_rows=place.band_rows,
            scan_rows=place.height, scan_cols=place.width, input_rows=place.model_rows,
            input_cols=place.model_cols,
            **{f"{l}_raw": np.asarray(out[l]["raw"][:, 0]) for l in layers},
            **{f"{l}_norm": np.asarray(out[l]["norm"][:, 0]) for l in layers})
  rows, cols = place.model_rows, place.model_cols
  aspect = (place.band_rows / rows) / (place.width / cols)
  wider = ("" if scale["col_um"] is None else
           f" (physically {scale['col_um'] / scale['row_um']:.1f}x as wide)")
  band = (f"model input band: scan rows {place.top}-{place.top + place.band_rows - 1} of "
          f"{place.height}, all {place.width} columns, scan pixels drawn square{wider}; "
          f"{inputs.scale_text(scale)}")
  if len(box):
    r0, c0, r1, c1 = box_in_view(box, place)
    band += f"\nbox (dashed): scan rows {r0}-{r1}, columns {c0}-{c1} (--cam_box in view)"
  plots.cam_panel(cam_png, x[:rows, :cols],
                  {l: np.asarray(out[l]["norm"][:, 0, :rows, :cols]) for l in layers},
                  title=f"{title}\n{band}", model=model, aspect=aspect,
                  pixel_um=model_pixel_um(place, scale), checks=checks,
                  box=model_box(box, place))


def faithfulness_kinds(faithfulness_flag) -> List[str]:
  flag = faithfulness_flag or "none"
  if flag not in faithfulness.KINDS:
    raise InputError(f"--cam_faithfulness={flag}: valid values are {faithfulness.KINDS}")
  return {"none": [], "deletion": ["deletion"], "road": ["road"],
          "all": ["deletion", "road"]}[flag]


def make_explainer(trained, layers, method, target) -> Explainer:
  """The Explainer of a training workdir (Trained) or an ensemble workdir (Ensemble)."""
  cfg = trained.config.explain
  members = trained.members
  if any(m.model != members[0].model for m in members):
    raise InputError(f"--workdir={trained.workdir}: its members are different networks; explain "
                     "needs one architecture (the sanity check re-initialises the same modules)")
  if len(members) > 1 or trained.flip:
    if method not in gradcam.LINEAR_METHODS:
      raise InputError(f"--cam_method={method}: {trained.workdir} is an ensemble, explained "
                       f"as one network with a method linear in the gradient "
                       f"({', '.join(gradcam.LINEAR_METHODS)})")
  return Explainer([(m.model, m.variables) for m in members], layers, method, target,
                   int(cfg.deletion_steps), int(cfg.road_steps), float(cfg.road_noise),
                   float(cfg.removal_batch_mb), trained.flip)


def explain_sets(sets, trained, explainer: Explainer, run_out, box, kinds, sanity: bool,
                 title: str, checks=None):
  """Explains the chosen scans (chosen_scans) of each ScanSet of `sets` ((ScanSet, scale)
  pairs), writing SCAN_cam.npz/.png as it goes (progress per scan; `checks`, the held-out
  verdicts the figures show: write_scan; titles say when the model learned the scan). Returns
  (per-scan statistics with in_training and training_volume, TrainingScans.flags; the sanity
  result or None)."""
  cfg, layers, target = trained.config.explain, explainer.layers, explainer.target
  total = sum(len(chosen_scans(s, cfg)) for s, _ in sets)
  per_scan, sanity_result, clipped = [], None, False
  training = inference.training_scans(trained)
  key = jax.random.key(trained.config.seed)
  with Progress(total, "explain", unit="scan") as progress:
    for scans, scale in sets:
      for i in chosen_scans(scans, cfg):
        x, y, place = inference.prepare(
            trained, scans.images[i], None if scans.masks is None else scans.masks[i])
        sbox = model_box(box, place) if target == "box" else ()
        inside = box_in_view(box, place) if len(sbox) else ()
        if inside and not clipped and inside != tuple(box):
          clipped = True                                   # said once per run
          print(f"note: --cam_box {tuple(box)} reaches beyond the model's view of "
                f"{scans.names[i]} (scan rows {place.top}-{place.top + place.band_rows}, "
                f"columns 0-{place.width}); its maps explain the part inside, {inside} "
                "(drawn dashed)")
        key, k_scan, k_sanity = jax.random.split(key, 3)
        scan = explain_scan(explainer, x, y, place, sbox, kinds, k_scan)
        if sanity and sanity_result is None:
          t0 = time.perf_counter()
          trained_maps = {l: np.asarray(scan["out"][l]["raw"][:, 0]) for l in layers}
          sanity_result = explainer.sanity(x, sbox, trained_maps,
                                           (place.model_rows, place.model_cols), k_sanity)
          sanity_result["scan"] = scans.names[i]
          scan["timing"]["sanity_s"] = time.perf_counter() - t0
        (seen,), (volume,) = training.flags(scans.names[i:i + 1], scans.images[i:i + 1])
        cam_npz, cam_png = run_out.claim(scans.names[i], ("_cam.npz", "_cam.png"))
        write_scan(cam_npz, cam_png, x, scan["out"], layers, place,
                   f"{scans.names[i]}{report.training_title(seen, volume)}"
                   f"{report.low_support_title(scan['low_support'])}: {title}", scale,
                   model=trained.workdir, checks=checks, box=box if len(sbox) else ())
        run_out.wrote(cam_npz, cam_png)
        per_scan.append({"name": scans.names[i], "layers": scan["stats"],
                         "timing": scan["timing"], "in_training": seen,
                         "training_volume": volume, "supported_share": scan["supported_share"],
                         "low_support": scan["low_support"]})
        progress.update()
  return per_scan, sanity_result


def explain_settings(trained, explainer, sets, per_scan, kinds, sanity, input_path, workdir,
                     method, target, box, layers) -> Dict:
  """What cam_stats.json records about the run."""
  with_masks = all(s.masks is not None for s, _ in sets)
  first = jnp.asarray(inference.prepare(trained, sets[0][0].images[0])[0][None])
  return {"method": method, "target": target, "box": list(box), "layers": list(layers),
          "scans": len(per_scan), "scans_read": sum(len(s) for s, _ in sets),
          "scan_indices": [int(i) for i in trained.config.explain.scan_indices],
          "input": input_path, "epoch": trained.epoch,
          "workdir": workdir, "region": "ground truth" if with_masks else "prediction",
          "faithfulness": kinds, "sanity": bool(sanity),
          "road_noise": explainer.road_noise,
          "road_fractions": explainer.fractions["road"].tolist(),
          "deletion_fractions": explainer.fractions["deletion"].tolist(),
          **inference.model_record(trained),            # members, views, member_workdirs
          "scales": {scans.source: inputs.scale_record(scale) for scans, scale in sets},
          "last_layer": feeding_class_head(explainer, first)}


def feeding_class_head(explainer, x) -> List[str]:
  """[the module that feeds the class head, the class head]: the pair cam_report's alpha
  meaning needs (the fluid and boundary heads, where present, come after the class head)."""
  order = gradcam.top_level_order(explainer.model, explainer.variables[0], x)
  at = order.index(CLASS_HEAD)
  return [order[at - 1], CLASS_HEAD]


def workdir_evidence(workdir: str, method: str, layers) -> Dict:
  """The workdir's held-out evidence (cam_evidence.json) for `method` at `layers`, or None
  when the workdir has none."""
  path = os.path.join(workdir, EVIDENCE_FILE)
  if not os.path.exists(path):
    return None
  evidence = read_json(path)
  if not (isinstance(evidence, dict) and isinstance(evidence.get("methods"), dict)
          and isinstance(evidence.get("models"), str)):
    raise InputError(f"{path}: not a held-out evidence file (written by "
                     "scripts/cam_evidence.py: 'models' and 'methods')")
  found = evidence["methods"].get(method, {})
  return dict(evidence, methods={method: {l: found[l] for l in layers if l in found}})


def checked_box(flag, target: str, default) -> tuple:
  """The box of target 'box' as a tuple: `flag` (--cam_box, or --config.explain.box), else the
  workdir's explain.box. A box given for another target is refused; target 'box' needs four
  numbers."""
  if flag and target != "box":
    raise InputError(f"--cam_box (explain.box): only used with --cam_target=box (the target is "
                     f"'{target}')")
  box = tuple(flag) if flag else tuple(default)
  if target == "box" and len(box) != 4:
    raise InputError("--cam_box: target 'box' needs row0,col0,row1,col1 in scan pixels")
  return box


def print_explained(per_scan: List[Dict], available: int, cfg, what: str, run_out,
                    skipped: int, seen: Dict) -> None:
  """The console's closing lines: scans explained (per_scan; of how many, when the explain
  config `cfg` chose fewer), `what` (method and layers), the output folder, failed and
  skipped files, and warnings when any of them have little of the layer order predict reports
  (`low_support`) or were in the model's training set or from its training volumes (`seen`:
  inference.training_overlap)."""
  explained = len(per_scan)
  chosen = (f"explain.scan_indices={','.join(map(str, cfg.scan_indices))}" if cfg.scan_indices
            else f"explain.max_scans={cfg.max_scans} per file; --config.explain.max_scans=N "
            "explains more")
  capped = f" of {available} ({chosen})" if available > explained else ""
  print(f"explained {report.count(explained, 'scan')}{capped} ({what}) -> {run_out.folder}; "
        f"{run_out.num_failed} failed, {skipped} skipped")
  low = sum(p["low_support"] for p in per_scan)
  if low:
    print(report.low_support_warning(low, f"{report.count(explained, 'scan')} explained",
                                     "the layers in anatomical order (every boundary found)",
                                     " of the model's input (the maps explain outputs that "
                                     "predict would not measure)"))
  if report.training_overlap(seen):
    print(f"warning: {report.training_overlap_text(seen, explained, ' explained')}: "
          f"{report.NOT_HELD_OUT['explain']}")


def layers_source(workdir: str, layers, overrides) -> str:
  """Where explain's layers come from, as its errors name it: --cam_layers (or
  --config.explain.layers), an ensemble's settings, or the (first member's) config.json."""
  if layers or "explain.layers" in (overrides or {}):
    return "--cam_layers"
  if not inference.is_ensemble(workdir):
    return f"explain.layers of {workdir}/config.json"
  spec = inference.read_ensemble_file(workdir)
  return (f"explain.layers of {workdir}/{inference.ENSEMBLE_FILE} (its settings)"
          if "explain.layers" in spec["settings"] else
          f"explain.layers of {spec['members'][0]}/config.json (the first member's)")


def run(workdir: str, input_path: str, output: str, layers=None, method=None, target=None,
        box=None, faithfulness_flag=None, sanity: bool = False, overrides=None,
        pixel_um: str = None) -> Dict:
  """Explains the chosen scans (chosen_scans) of every readable file that `input_path` names into
  the folder `output` (files that cannot be read or are refused are listed in errors.csv).
  pixel_um: --pixel_um=ROW[,COL], the pixel size of inputs without their own (scale bars)."""
  pixel_um_option = inputs.parse_pixel_um(pixel_um)
  stored = inference.stored_config(workdir, overrides)     # options checked before any loading
  cfg = stored.explain
  option = layers_source(workdir, layers, overrides)
  layers = tuple(layers or cfg.layers)
  method, target = method or cfg.method, target or cfg.target
  box = checked_box(box or (overrides or {}).get("explain.box"), target, cfg.box)
  kinds = faithfulness_kinds(faithfulness_flag)
  files, skipped = inputs.list_inputs(input_path)
  run_out = RunOutputs(check_output_folder(output), files, "explain", [input_path])
  run_out.refuse_replacing("cam_stats", (".json", ".md"))
  single = inputs.is_one_input(input_path)     # read before the model is loaded
  sets = inputs.read_scaled(files, run_out.failed, stored.data, pixel_um_option,
                            stop_on_error=True) if single else None
  trained = inference.load_trained(workdir, overrides)
  explainer = make_explainer(trained, layers, method, target)
  explainer.check_layers(option)       # a folder's files are read after the options are checked
  evidence = workdir_evidence(workdir, method, layers)
  for path in skipped:
    run_out.skipped(path, "not a scan file (no scan extension)")
  # Read before the folder is made: nothing is written for a bad single file.
  sets = sets or inputs.read_scaled(files, run_out.failed, stored.data, pixel_um_option)
  sets = with_chosen_scans(sets, trained.config.explain, run_out, single)
  if target == "box":
    refuse_box_outside_views(sets, trained, box)
  run_out.start()
  per_scan, sanity_result = explain_sets(sets, trained, explainer, run_out, box, kinds, sanity,
                                         f"{gradcam.METHOD_NAMES[method]}, target '{target}' "
                                         f"({gradcam.TARGET_TEXT[target]})",
                                         heldout_passed(evidence, method, target))
  if not per_scan:
    run_out.finish({"input": input_path, "workdir": workdir, "scans": 0})
    raise InputError(f"{input_path}: no scans to explain (no file could be read or used; see "
                     f"{run_out.folder}/errors.csv)")
  settings = explain_settings(trained, explainer, sets, per_scan, kinds, sanity, input_path,
                              workdir, method, target, box, layers)
  seen = inference.overlap_counts([p["in_training"] for p in per_scan],
                                  [p["training_volume"] for p in per_scan])
  result = {**summarise(per_scan, sanity_result, settings), "heldout": evidence, **seen}
  stats_json, stats_md = run_out.claim("cam_stats", (".json", ".md"))
  write_json(stats_json, result)
  write_text(stats_md, stats_markdown(result))
  run_out.wrote(stats_json, stats_md)
  read = settings["scans_read"]           # more than explained where fewer were chosen
  run_out.finish({"input": input_path, "workdir": workdir, "scans": len(per_scan),
                  "scans_read": read, **seen})
  print_explained(per_scan, read, cfg,
                  f"{method}, layers {', '.join(layers)}", run_out, len(skipped), seen)
  run_out.refuse_failures(input_path, "used")
  return result
