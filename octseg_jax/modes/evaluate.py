"""--mode=eval: score the best checkpoint at native resolution, both protocols + geometry.

Scores are computed from predictions mapped back to each scan's own resolution (the crop,
resize and padding of the recipe undone), against the original masks; 255 never counts.
"""

import os
import time
from typing import Dict, List, Optional

import numpy as np

from octseg_jax.geometry import boundaries as geom
from octseg_jax.learning import metrics, uncertainty
from octseg_jax.outputs import plots
from octseg_jax.runtime import provenance
from octseg_jax.outputs import report
from octseg_jax.data import inputs, pipeline, preprocessing
from octseg_jax.anatomy import IGNORE, NUM_CLASSES, NUM_LAYERS
from octseg_jax.errors import InputError
from octseg_jax.outputs.atomic import write_json, write_text
from octseg_jax.outputs.folder_run import RunOutputs, check_output_folder
from octseg_jax.runtime.progress import Progress
from octseg_jax.serving.workdir import SPLIT_FILE

PANEL_SCANS = 3   # scans in the Figure-4 panel (input, truth, prediction) that eval draws


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
  the absolute fluid-area error per scan, from fluid probabilities [H, W] thresholded at 0.5.
  Pixels count where the fluid state is known: labelled (mask != 255) or marked fluid."""
  counts = []
  for p, f, m in zip(fluid_probs, fluid_true, masks):
    known = (m != IGNORE) | (f > 0)
    pred, true = (p > 0.5) & known, (f > 0) & known
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
                pred_bounds: np.ndarray, supported: np.ndarray, uncertain_um: float) -> Dict:
  """ECE and reliability of the top-class confidence (uncertainty.reliability, over all scans'
  labelled pixels, the rows outside the model's band, certain background, included) and under
  'band' the ECE over the band's pixels only;
  for an ensemble also the rank correlation of the members' boundary spread with the boundary
  error of the averaged prediction, per boundary and pooled, and the error in the columns
  predict flags uncertain (spread over uncertain_um, among its supported columns) and in the
  others. true_bounds, pred_bounds: the masks' boundaries and the prediction's sub-pixel ones
  as predict writes them (geometry.predicted_geometry), [8, sum W]; supported [sum W] its
  columns that predict measures (geometry.supported_columns). The spread is converted at
  pixel_um (the files' row size, run_scale, or the config's for the validation split), as
  predict flags it."""
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
  if "boundary_sd_rows" in outputs[0]:
    sd = np.concatenate([o["boundary_sd_rows"] for o in outputs], axis=-1) * pixel_um
    out["uncertainty_vs_error"] = uncertainty.uncertainty_vs_error(sd, pred_bounds, true_bounds,
                                                                   pixel_um)
    out["uncertain_columns"] = uncertainty.flagged_columns_error(sd, pred_bounds, true_bounds,
                                                                 pixel_um, uncertain_um, supported)
  return out


def validation_scans(trained):
  """The validation split of the workdir, rebuilt from its config and split.json: images,
  masks, fluid masks (None where not annotated), subjects, names."""
  sets = pipeline.load_scans(trained.config.data)
  images, masks, subjects, names = pipeline.flatten(sets)
  fluid = pipeline.fluid_of(sets)
  from octseg_jax.config.checks import check_split_names
  wanted = check_split_names(trained.split, os.path.join(trained.workdir, SPLIT_FILE))["names"]
  index = {n: i for i, n in enumerate(names)}
  missing = [n for n in wanted if n not in index]
  if missing:
    raise InputError(f"{trained.workdir}/split.json: validation scans {missing[:3]} are not in "
                     "the configured data (was the data moved or changed?)")
  idx = [index[n] for n in wanted]
  check_scans_digest(trained, [images[i] for i in idx], [masks[i] for i in idx])
  return ([images[i] for i in idx], [masks[i] for i in idx], [fluid[i] for i in idx],
          subjects[idx], wanted)


def check_scans_digest(trained, images, masks) -> None:
  """Refuses validation scans whose pixels are not those the model (each ensemble member) was
  validated on: split.json's val.sha256 (pipeline.scans_digest; absent before 2026-12, and
  then not checked)."""
  recorded = {m.split["val"].get("sha256") for m in trained.members} - {None}
  if recorded and recorded != {pipeline.scans_digest(images, masks)}:
    read = data_folder_text(trained)
    scans = f"the validation scans ({read})" if read else "the validation scans"
    raise InputError(f"{trained.workdir}/split.json: {scans} have the names, not the pixels, "
                     "of those the model was validated on (other data under the same names?); "
                     "score other data with --input")


def check_common_validation(members) -> None:
  """An ensemble is scored on one split: its members' validation scans must be the same."""
  names, digest = members[0].split["val"]["names"], members[0].split["val"].get("sha256")
  for m in members[1:]:
    other = m.split["val"].get("sha256")
    if m.split["val"]["names"] != names or (digest and other and other != digest):
      raise InputError(f"{m.workdir}/split.json: validation scans differ from those of "
                       f"{members[0].workdir} (members of other folds?); an ensemble is scored "
                       "on one common split, so give it labelled scans with --input")


def scans_to_score(trained, input_path: Optional[str], run_out: RunOutputs, read=None,
                   skipped=()):
  """(images, masks, fluid, subjects, names, data name, scale) of the workdir's validation
  split, or of `read` (read_to_score), the files with masks that input_path names, whose
  unreadable files went to run_out.failed (`skipped`: not scan files). scale: the files' one
  pixel size (run_scale), the config's data.pixel_um for the split."""
  if not input_path:
    return validation_to_score(trained)
  for path in skipped:
    run_out.skipped(path, "not a scan file (no scan extension)")
  if not read:
    run_out.start()
    run_out.finish({"input": input_path, "scans": 0})
    raise InputError(f"{input_path}: no scans with masks to score (see "
                     f"{run_out.folder}/errors.csv)")
  images, masks, subjects, names = pipeline.flatten([s for s, _ in read])
  return (images, masks, pipeline.fluid_of([s for s, _ in read]), subjects, names, input_path,
          run_scale(read, input_path))


def read_to_score(input_path, files, run_out: RunOutputs, data_cfg, pixel_um_option):
  """[(ScanSet, scale)] of the readable `files` with masks that input_path names (a single bad
  file stops the run, a folder's go to run_out.failed); none for the validation split, which
  takes no --pixel_um. data_cfg: the workdir's data settings (its stored config's)."""
  if not input_path:
    if pixel_um_option:
      raise InputError("--pixel_um: only for files given with --input (the validation split is "
                       "scored at the model config's data.pixel_um)")
    return None
  return inputs.read_scaled(files, run_out.failed, data_cfg, pixel_um_option,
                            stop_on_error=os.path.isfile(input_path), require_masks=True)


def run_scale(read, input_path: str) -> Dict:
  """The one row size of eval's files [(ScanSet, scale)]: boundary errors are reported at one
  scale per run, so files of different row sizes are refused (score them in separate runs)."""
  first = {}                                  # row size -> the first file that has it
  for scans, scale in read:
    first.setdefault(round(scale["row_um"], 6), (scans.source, scale))
  if len(first) > 1:
    (a, sa), (b, sb) = list(first.values())[:2]
    raise InputError(f"{input_path}: its files have different pixel sizes ({a}: "
                     f"{inputs.scale_text(sa)}; {b}: {inputs.scale_text(sb)}); eval reports "
                     "boundary errors at one scale: score them in separate runs")
  sources = sorted({scale["source"] for _, scale in read}, key=lambda s: (s.startswith("default"),
                                                                         s))
  source = (sources[0] if len(sources) == 1 else
            f"{' or '.join(sources)}, by file (manifest.json scales)")
  return {"row_um": read[0][1]["row_um"], "col_um": None, "source": source}


def validation_to_score(trained):
  """scans_to_score's record of the workdir's validation split, at the config's data.pixel_um."""
  check_common_validation(trained.members)       # an ensemble's members share one split
  images, masks, fluid, subjects, names = validation_scans(trained)
  read = data_folder_text(trained)
  data_name = (f"validation split of {trained.workdir} "
               f"(subjects {trained.split['val'].get('subjects')})" + (f" {read}" if read else ""))
  scale = {"row_um": float(trained.config.data.pixel_um), "col_um": None,
           "source": inputs.DEFAULT_ROW_SOURCE}
  return images, masks, fluid, subjects, names, data_name, scale


def data_folder_text(trained) -> str:
  """'read from FOLDER' for a source read from a folder (which eval may be told to read
  elsewhere, --config.data.duke_dir / folder_dir), '' for the synthetic phantom."""
  folder = pipeline.data_folder(trained.config.data)
  return f"read from {os.path.abspath(folder)}" if folder else ""


def predict_all(trained, images) -> List[Dict]:
  """inference.predict_outputs in eval batches, with progress."""
  from octseg_jax.serving.inference import predict_outputs
  batch = int(trained.config.train.eval_batch_size)
  outputs = []
  with Progress(len(images), "eval: predict", unit="scan") as bar:
    for start in range(0, len(images), batch):
      outputs += predict_outputs(trained, images[start:start + batch], batch)
      bar.update(len(outputs) - bar.done)
  return outputs


OUTPUTS = (("metrics", (".json", ".md")), ("side_by_side", (".png",)),
           ("eval_provenance", (".json",)))          # eval's files in its output folder


def score_outputs(trained, outputs, masks, fluid, subjects, pixel_um: float) -> Dict:
  """score() of the predictions with calibration and, for a model with heads, score_heads;
  boundary errors in um at pixel_um per row."""
  probs = [o["probs"] for o in outputs]
  known = all(f is not None for f in fluid)
  smooth_sd = float(trained.config.predict.smooth_sd_columns)
  geometry = []                          # once for score and calibration: the order fix is slow
  with Progress(len(probs), "eval: score", unit="scan") as bar:
    for p in probs:
      geometry.append(geom.predicted_geometry(p, smooth_sd))
      bar.update()
  result = score(probs, masks, subjects, pixel_um, None, fluid if known else None, smooth_sd,
                 geometry)
  if partly_unknown_fluid(fluid):
    result["topology"]["by_fluid_columns_skipped"] = partly_unknown_fluid(fluid)
  true_bounds = np.concatenate([geom.boundaries_from_labels(m) for m in masks], axis=-1)
  supported = np.concatenate([geom.supported_columns(np.argmax(p, -1), g[2])
                              for p, g in zip(probs, geometry)])
  result["calibration"] = calibration(outputs, masks, true_bounds, pixel_um,
                                      np.concatenate([g[2] for g in geometry], axis=-1),
                                      supported, float(trained.config.predict.uncertain_um))
  if trained.head_names:
    result["heads"] = score_heads(outputs, masks, fluid, subjects, true_bounds, pixel_um)
  return result


def write_outputs(run_out: RunOutputs, result: Dict, trained, images, masks, probs, names,
                  data_name: str, started: float, scale: Dict) -> None:
  """metrics.json, metrics.md, side_by_side.png and eval_provenance.json (with the seconds
  since `started`, time.time()) into the run folder."""
  folder = run_out.folder
  paths = [p for base, suffixes in OUTPUTS for p in run_out.claim(base, suffixes)]
  write_json(paths[0], result)
  write_text(paths[1], report.metrics_markdown(result))
  n = min(PANEL_SCANS, len(images))
  plots.side_by_side(paths[2], images[:n], masks[:n],
                     [np.argmax(p, -1).astype(np.uint8) for p in probs[:n]], names[:n],
                     title=f"input | grader's labels | the model's labels (argmax, before the "
                     f"order fix): the first {report.count(n, 'scan')} of the {len(images)} "
                     f"scored, in the order scored; {inputs.scale_text(scale)}")
  provenance.write(folder, trained.config, wall_time_s=time.time() - started,
                   filename=os.path.basename(paths[3]), extra={"mode": "eval", "data": data_name})
  run_out.wrote(*paths)


def run(workdir: str, input_path: Optional[str], output: str, overrides=None,
        pixel_um: str = None) -> Dict:
  """Scores the workdir's best checkpoint on its validation split or on the files with masks
  that input_path names, into the folder `output` (the folder-run protocol of predict and
  explain: a lock while it runs, errors.csv for files that could not be read, manifest.json
  last; exit status 2 when a file failed). Boundary errors in um at the files' own row size,
  or --pixel_um (`pixel_um`) for files without one (run_scale)."""
  from octseg_jax.serving import inference
  started = time.time()
  pixel_um_option = inputs.parse_pixel_um(pixel_um)
  files, skipped = inputs.list_inputs(input_path) if input_path else ([], [])
  run_out = RunOutputs(check_output_folder(output), files, "eval")
  for base, suffixes in OUTPUTS:
    run_out.refuse_replacing(base, suffixes)
  read = read_to_score(input_path, files, run_out,                # before the model is loaded
                       inference.stored_config(workdir, overrides).data, pixel_um_option)
  trained = inference.load_trained(workdir, overrides)
  images, masks, fluid, subjects, names, data_name, scale = scans_to_score(
      trained, input_path, run_out, read, skipped)
  if not any((m != IGNORE).any() for m in masks):
    raise InputError(f"{data_name}: no labelled pixel in any mask (every pixel is 255 = "
                     "ignore), so there is nothing to score")
  run_out.start()                            # reads first: nothing to score, nothing written
  outputs = predict_all(trained, images)
  result = score_outputs(trained, outputs, masks, fluid, subjects, scale["row_um"])
  result.update({"data": data_name, "checkpoint_epoch": trained.epoch, "workdir": workdir,
                 "scans_in_training": inference.scans_in_training(trained, names),
                 "pixel_um_source": scale["source"],
                 "paper_comparable": report.paper_comparable(trained.config, input_path)})
  write_outputs(run_out, result, trained, images, masks, [o["probs"] for o in outputs], names,
                data_name, started, scale)
  run_out.finish({"input": input_path, "workdir": workdir, "scans": len(images),
                  "scale": {"row_um": scale["row_um"], "source": scale["source"]},
                  "scales": {s.source: inputs.scale_record(r) for s, r in read or ()}})
  lit = result["raw"]["literature"]["mean_layer_dice"]
  print(report.console_summary(result))
  print(f"eval on {data_name}: {report.count(len(images), 'scan')}, mean layer Dice {lit:.4f}, "
        f"accuracy {result['raw']['paper']['accuracy']:.4f}, boundary errors at "
        f"{inputs.scale_text(scale)}; wrote "
        f"{run_out.folder}/metrics.json, metrics.md and side_by_side.png")
  if result["scans_in_training"]:
    print(f"warning: {report.training_overlap_text(result)}")
  if run_out.num_failed:
    raise InputError(f"{input_path}: {run_out.num_failed} of {len(files)} files could not be "
                     f"read (listed in {run_out.folder}/errors.csv)")
  return result
