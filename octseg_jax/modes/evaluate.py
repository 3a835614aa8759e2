"""--mode=eval: score the best checkpoint at native resolution, both protocols + geometry.

Scores are computed from predictions mapped back to each scan's own resolution (the crop,
resize and padding of the recipe undone), against the original masks; 255 never counts.
"""

import os
import time
from typing import Dict, List, Optional

import numpy as np

from octseg_jax.geometry import boundaries as geom
from octseg_jax.learning import scoring
from octseg_jax.outputs import plots
from octseg_jax.runtime import provenance
from octseg_jax.outputs import report
from octseg_jax.data import inputs, pipeline
from octseg_jax.anatomy import IGNORE
from octseg_jax.errors import InputError
from octseg_jax.outputs.atomic import write_json, write_text
from octseg_jax.outputs.folder_run import RunOutputs, check_output_folder
from octseg_jax.runtime.progress import Progress
from octseg_jax.layout import SPLIT_FILE

PANEL_SCANS = 3   # scans in the Figure-4 panel (input, truth, prediction) that eval draws


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
      raise InputError(f"--input: needed to score this ensemble: its members were validated on "
                       f"different scans ({m.workdir}/split.json against {members[0].workdir}'s: "
                       "members of other folds?), so it has no common split; give labelled "
                       "scans that none of its members trained on")


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
  images, masks, fluid, subjects, names, scale = read_arrays(read, input_path)
  return images, masks, fluid, subjects, names, input_path, scale


def read_arrays(read, input_path: str):
  """(images, masks, fluid, subjects, names, scale) of read_to_score's [(ScanSet, scale)], the
  scale their one pixel size (run_scale)."""
  sets = [s for s, _ in read]
  images, masks, subjects, names = pipeline.flatten(sets)
  return (images, masks, pipeline.fluid_of(sets), subjects, names,
          run_scale(read, input_path))


def check_labelled(masks, data_name: str) -> None:
  """Refuses masks with no labelled pixel (every pixel IGNORE): there is nothing to score."""
  if not any((m != IGNORE).any() for m in masks):
    raise InputError(f"{data_name}: no labelled pixel in any mask (every pixel is 255 = "
                     "ignore), so there is nothing to score")


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
                            stop_on_error=inputs.is_one_input(input_path), require_masks=True)


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
  """learning.scoring's scores of the predictions with calibration and, for a model with heads,
  score_heads; boundary errors in um at pixel_um per row."""
  probs = [o["probs"] for o in outputs]
  known = all(f is not None for f in fluid)
  smooth_sd = float(trained.config.predict.smooth_sd_columns)
  geometry, position_sd = [], []        # once for score and calibration: the order fix is slow
  with Progress(len(probs), "eval: score", unit="scan") as bar:
    for p in probs:
      g, sd = geom.geometry_and_position_sd(p, smooth_sd)
      geometry.append(g)
      position_sd.append(sd)
      bar.update()
  result = scoring.score(probs, masks, subjects, pixel_um, None, fluid if known else None,
                         smooth_sd, geometry)
  unknown = scoring.partly_unknown_fluid(fluid)
  if unknown:
    result["topology"]["by_fluid_columns_skipped"] = unknown
  true_bounds = np.concatenate([geom.boundaries_from_labels(m) for m in masks], axis=-1)
  supported = np.concatenate([geom.supported_columns(np.argmax(p, -1), g[2])
                              for p, g in zip(probs, geometry)])
  result["calibration"] = scoring.calibration(outputs, masks, true_bounds, pixel_um,
                                      np.concatenate([g[2] for g in geometry], axis=-1),
                                      supported, float(trained.config.predict.uncertain_um),
                                      np.concatenate(position_sd, axis=-1),
                                      float(trained.config.predict.uncertain_position_sd_um))
  if trained.head_names:
    result["heads"] = scoring.score_heads(outputs, masks, fluid, subjects, true_bounds, pixel_um)
  return result


def panel_scans(count: int) -> List[int]:
  """The scans of eval's Figure-4 panel: PANEL_SCANS of `count`, spread evenly from the first
  to the last (the middle B-scans of a volume are nearest the fovea), all when fewer."""
  return sorted(set(np.linspace(0, count - 1, min(PANEL_SCANS, count)).round().astype(int)
                    .tolist()))


def write_outputs(run_out: RunOutputs, result: Dict, trained, images, masks, probs, names,
                  data_name: str, started: float, scale: Dict) -> None:
  """metrics.json, metrics.md, side_by_side.png and eval_provenance.json (with the seconds
  since `started`, time.time()) into the run folder."""
  folder = run_out.folder
  paths = [p for base, suffixes in OUTPUTS for p in run_out.claim(base, suffixes)]
  write_json(paths[0], result)
  write_text(paths[1], report.metrics_markdown(result))
  shown = panel_scans(len(images))
  plots.side_by_side(paths[2], [images[i] for i in shown], [masks[i] for i in shown],
                     [np.argmax(probs[i], -1).astype(np.uint8) for i in shown],
                     [names[i] for i in shown],
                     title=f"input | grader's labels | the model's labels (argmax, before the "
                     f"order fix): {report.count(len(shown), 'scan')} of the {len(images)} "
                     f"scored, spread evenly in the order scored (first to last); "
                     f"{inputs.scale_text(scale)}")
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
  stored = inference.stored_config(workdir, overrides).data
  run_out = RunOutputs(check_output_folder(output), files, "eval",
                       [input_path or pipeline.data_folder(stored)])    # what is read whole
  for base, suffixes in OUTPUTS:
    run_out.refuse_replacing(base, suffixes)
  read = read_to_score(input_path, files, run_out, stored,      # before the model is loaded
                       pixel_um_option)
  trained = inference.load_trained(workdir, overrides)
  images, masks, fluid, subjects, names, data_name, scale = scans_to_score(
      trained, input_path, run_out, read, skipped)
  check_labelled(masks, data_name)
  run_out.start()                            # reads first: nothing to score, nothing written
  overlap = inference.training_overlap(trained, names, images)
  if report.training_overlap(overlap):          # said before the scoring, and with its numbers
    print(f"note: {report.training_overlap_text(overlap, len(images))}")
  outputs = predict_all(trained, images)
  result = score_outputs(trained, outputs, masks, fluid, subjects, scale["row_um"])
  result.update({"data": data_name, "checkpoint_epoch": trained.epoch, "workdir": workdir,
                 **inference.model_record(trained),
                 **overlap,
                 "pixel_um_source": scale["source"],
                 "paper_comparable": report.paper_comparable(trained.config, input_path)})
  write_outputs(run_out, result, trained, images, masks, [o["probs"] for o in outputs], names,
                data_name, started, scale)
  run_out.finish({"input": input_path, "workdir": workdir, "scans": len(images),
                  **overlap,
                  "scale": {"row_um": scale["row_um"], "source": scale["source"]},
                  "scales": {s.source: inputs.scale_record(r) for s, r in read or ()}})
  lit = result["topology"]["literature"]["mean_layer_dice"]      # what predict outputs
  if report.training_overlap(result):                  # before the numbers it qualifies
    print(f"warning: {report.training_overlap_text(result, len(images))}, "
          f"{report.NOT_HELD_OUT['eval']}")
  sd = float(trained.config.predict.smooth_sd_columns)
  print(report.console_summary(result))
  print(f"eval on {data_name}: {report.count(len(images), 'scan')}, mean layer Dice {lit:.4f} "
        f"(order fix{f', smoothed along the B-scan with sd {sd:g} columns' if sd else ''}, "
        f"as predict outputs; raw argmax {result['raw']['literature']['mean_layer_dice']:.4f}), "
        f"accuracy {result['raw']['paper']['accuracy']:.4f}, boundary errors at "
        f"{inputs.scale_text(scale)}; wrote "
        f"{run_out.folder}/metrics.json, metrics.md and side_by_side.png")
  run_out.refuse_failures(input_path, "")
  return result
