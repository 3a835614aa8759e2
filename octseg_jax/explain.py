"""--mode=explain: per-class Grad-CAM maps, Table-3 statistics, localisation and deletion.

Per input scan SCAN (up to explain.max_scans per file): SCAN_cam.npz (input x and, per
layer, raw and normalised maps [K, h, w] at model-input resolution), SCAN_cam.png (paper
Figure 6), and for the whole run cam_stats.json and cam_stats.md.
"""

import os
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from octseg_jax import gradcam, plots, preprocessing
from octseg_jax.data import inputs
from octseg_jax.data.scans import LAYER_NAMES
from octseg_jax.errors import InputError
from octseg_jax.io_utils import write_json, write_npz, write_text
from octseg_jax.outputs import RunOutputs, check_output_folder
from octseg_jax.report import fmt, table


def model_box(box, placement: preprocessing.Placement):
  """(row0, col0, row1, col1) in raw-scan pixels -> model-input pixels (integer bounds)."""
  if not len(box):
    return ()
  r0, c0, r1, c1 = box
  sy = placement.model_rows / placement.band_rows
  sx = placement.model_cols / placement.width
  to_row = lambda r: int(np.clip(round((r - placement.top) * sy), 0, placement.model_rows))
  to_col = lambda c: int(np.clip(round(c * sx), 0, placement.model_cols))
  out = (to_row(r0), to_col(c0), to_row(r1), to_col(c1))
  if out[2] <= out[0] or out[3] <= out[1]:
    raise InputError(f"--cam_box {tuple(box)}: empty inside the model's view of the scan")
  return out


class Explainer:
  """Jitted all-class explanation and deletion scoring for one model and settings."""

  def __init__(self, model, variables, layers, method, target, steps: int, seed: int = 0):
    if method not in gradcam.METHODS:
      raise InputError(f"--cam_method={method}: valid methods are {gradcam.METHODS}")
    if target not in gradcam.TARGETS:
      raise InputError(f"--cam_target={target}: valid targets are {gradcam.TARGETS}")
    self.model, self.variables = model, variables
    self.layers, self.method, self.target = tuple(layers), method, target
    self.fractions = jnp.linspace(0.0, 1.0, steps + 1)
    self.seed = seed
    self._explain = jax.jit(
        lambda v, x, box: gradcam.explain_batch(model, v, x, self.layers, method, target, box),
        static_argnums=2)
    self._logits = jax.jit(lambda v, x: model.apply(v, x, train=False))

  def explain(self, x: np.ndarray, box=()):
    try:
      return self._explain(self.variables, jnp.asarray(x), tuple(box))
    except ValueError as e:
      raise InputError(f"--cam_layers {list(self.layers)}: {e}") from None

  def deletion(self, x: np.ndarray, maps: np.ndarray, weights: np.ndarray, key) -> Dict:
    """Deletion curves for one scan. x [h, w]; maps [K, h, w]; weights [h, w, K] pixel sets.
    Pixels are deleted (set to the image mean) in map order and in a random order. Returns per
    class the score Y^c and the mean class probability over the pixel set, [K, S] each, for
    both orders, and the relative areas under the probability curves [K]."""
    k = maps.shape[0]
    fill = jnp.mean(x)
    w = jnp.asarray(weights)[None]
    out = {"fractions": np.asarray(self.fractions)}
    rand_rank = jax.random.uniform(key, x.shape)
    for order, rankings in (("map", maps), ("random", [rand_rank] * k)):
      scores, probs = [], []
      for c in range(k):
        imgs = gradcam.deletion_images(jnp.asarray(x), jnp.asarray(rankings[c]),
                                       self.fractions, fill)
        logits = self._logits(self.variables, imgs)
        scores.append(gradcam.class_scores(logits, w)[:, c])
        probs.append(gradcam.class_probability(logits, w)[:, c])
      probs = jnp.stack(probs)
      out[f"{order}_scores"] = np.asarray(jnp.stack(scores))
      out[f"{order}_probability"] = np.asarray(probs)
      out[f"{order}_area"] = np.asarray(gradcam.curve_area(self.fractions, probs))
    return out


def scan_statistics(out: Dict, layer: str, b: int, regions, valid) -> Dict:
  """Table-3 statistics and localisation for image b of a batch result, one layer."""
  r = out[layer]
  mass, area = gradcam.localisation(r["raw"][:, b], jnp.asarray(regions), jnp.asarray(valid))
  return {"alpha_mean": np.asarray(jnp.mean(r["alpha"][:, b], axis=-1)),
          "alpha": np.asarray(r["alpha"][:, b]),
          "max_raw": np.asarray(jnp.max(r["raw"][:, b], axis=(1, 2))),
          "mean_norm_intensity": np.asarray(jnp.mean(r["norm"][:, b], axis=(1, 2))),
          "activation_max": float(r["act_max"][b]),
          "mass_in_region": np.asarray(mass), "area_share": np.asarray(area)}


def stats_markdown(summary: Dict, settings: Dict) -> str:
  lines = ["# Grad-CAM statistics", "",
           f"Method {settings['method']}, target pixel set '{settings['target']}', "
           f"{settings['scans']} scans from {settings['input']}, checkpoint epoch "
           f"{settings['epoch']} of {settings['workdir']}. Means over scans.", "",
           "alpha = mean over channels of the feature-importance weights; max = maximum of the "
           "raw (unnormalised) map; mean intensity = mean of the [0, 1]-normalised map (the "
           "paper's eq. 8); in-region = share of the map's mass inside the class's region "
           f"({settings['region']}) against its share of the area; deletion AUC = area under "
           "the curve of the class's mean probability over its pixel set, relative to its "
           "start, while pixels are set to the image mean in map order, against a random order "
           "(1.0 = never falls; lower = falls faster = more faithful). The class scores Y^c "
           "along both curves are in cam_stats.json.", ""]
  for layer, s in summary.items():
    lines += [f"## {layer} (max activation {fmt(s['activation_max'], 3)})", ""]
    rows = []
    for c, name in enumerate(LAYER_NAMES):
      rows.append([c, name, fmt(s["alpha_mean"][c], 5), fmt(s["max_raw"][c], 4),
                   fmt(s["mean_norm_intensity"][c], 4), fmt(s["mass_in_region"][c], 3),
                   fmt(s["area_share"][c], 3), fmt(s["deletion_area"][c], 3),
                   fmt(s["random_deletion_area"][c], 3)])
    lines += [table(["class", "region", "alpha (mean)", "max (raw)", "mean intensity",
                     "in-region", "area share", "deletion AUC", "random AUC"], rows), ""]
  return "\n".join(lines)


def run(workdir: str, input_path: str, output: str, layers=None, method=None, target=None,
        box=None, overrides=None) -> Dict:
  from octseg_jax.inference import load_trained
  trained = load_trained(workdir, overrides)
  cfg = trained.config.explain
  layers = tuple(layers or cfg.layers)
  method, target = method or cfg.method, target or cfg.target
  box = tuple(box) if box else tuple(cfg.box)
  if target == "box" and len(box) != 4:
    raise InputError("--cam_box: target 'box' needs row0,col0,row1,col1 in scan pixels")
  explainer = Explainer(trained.model, trained.variables, layers, method, target,
                        int(cfg.deletion_steps), trained.config.seed)
  files, skipped = inputs.list_inputs(input_path)
  run_out = RunOutputs(check_output_folder(output), files, "explain")
  run_out.refuse_inputs("cam_stats", (".json", ".md"))
  run_out.start()
  for path in skipped:
    run_out.skipped(path, "not a scan file (no scan extension)")
  sets = [s for _, s in inputs.read_files(files, run_out.failed,
                                          int(trained.config.data.max_image_side),
                                          stop_on_error=os.path.isfile(input_path))]
  per_scan = []
  key = jax.random.key(trained.config.seed)
  with_masks = all(s.masks is not None for s in sets)
  for scans in sets:
    n = min(len(scans), int(cfg.max_scans))
    for i in range(n):
      x, y, place = preprocessing.prepare(scans.images[i],
                                          None if scans.masks is None else scans.masks[i],
                                          trained.recipe)
      sbox = model_box(box, place) if target == "box" else ()
      out = explainer.explain(x[None], sbox)
      logits = out["logits"]
      pred = np.asarray(jnp.argmax(logits[0], -1))
      regions = y if y is not None else pred
      valid = (regions != preprocessing.IGNORE)
      valid[place.model_rows:], valid[:, place.model_cols:] = False, False
      weights = np.asarray(gradcam.score_masks(logits, target, sbox))[0]
      stats = {}
      for layer in layers:
        s = scan_statistics(out, layer, 0, regions, valid)
        key, sub = jax.random.split(key)
        d = explainer.deletion(x, np.asarray(out[layer]["norm"][:, 0]), weights, sub)
        s.update(deletion_area=d["map_area"], random_deletion_area=d["random_area"],
                 deletion_scores=d["map_scores"], random_deletion_scores=d["random_scores"],
                 deletion_probability=d["map_probability"],
                 random_deletion_probability=d["random_probability"])
        stats[layer] = s
      name = scans.names[i]
      cam_npz, cam_png = run_out.claim(name, ("_cam.npz", "_cam.png"))
      write_npz(cam_npz, x=x,
                **{f"{l}_raw": np.asarray(out[l]["raw"][:, 0]) for l in layers},
                **{f"{l}_norm": np.asarray(out[l]["norm"][:, 0]) for l in layers})
      run_out.wrote(cam_npz, cam_png)
      plots.cam_panel(cam_png, x,
                      {l: np.asarray(out[l]["norm"][:, 0]) for l in layers},
                      title=f"{name}: {method}, target '{target}'", model=workdir)
      per_scan.append({"name": name, "layers": stats})
  if not per_scan:
    run_out.finish({"input": input_path, "workdir": workdir, "scans": 0})
    raise InputError(f"{input_path}: no scans to explain (no file could be read; see "
                     f"{run_out.folder}/errors.csv)")
  summary = {}
  for layer in layers:
    keys = ("alpha_mean", "max_raw", "mean_norm_intensity", "mass_in_region", "area_share",
            "deletion_area", "random_deletion_area")
    summary[layer] = {k: np.nanmean(np.stack([p["layers"][layer][k] for p in per_scan]), 0)
                      for k in keys}
    summary[layer]["activation_max"] = float(np.mean(
        [p["layers"][layer]["activation_max"] for p in per_scan]))
  settings = {"method": method, "target": target, "box": list(box), "layers": list(layers),
              "scans": len(per_scan), "input": input_path, "epoch": trained.epoch,
              "workdir": workdir, "region": "ground truth" if with_masks else "prediction"}
  result = {"settings": settings, "mean": summary, "per_scan": per_scan}
  stats_json, stats_md = run_out.claim("cam_stats", (".json", ".md"))
  write_json(stats_json, result)
  write_text(stats_md, stats_markdown(summary, settings))
  run_out.wrote(stats_json, stats_md)
  run_out.finish({"input": input_path, "workdir": workdir, "scans": len(per_scan)})
  print(f"explained {len(per_scan)} scans ({method}, layers {list(layers)}) -> {output}; "
        f"{run_out.num_failed} files failed, {len(skipped)} skipped")
  if run_out.num_failed:
    raise InputError(f"{input_path}: {run_out.num_failed} of {len(files)} files could not be "
                     f"read (listed in {run_out.folder}/errors.csv)")
  return result
