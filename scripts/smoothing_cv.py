"""Chooses predict.smooth_sd_columns by cross-validation: fold models scored on their own
held-out subjects at each smoothing sd, and the sd for each fold chosen on the other folds.

  python scripts/smoothing_cv.py --output=docs/results/smoothing/cv.json --sds=0,2,4,6,8,12 \\
      --set=shipped:pretrained/members/fold0_seed0,pretrained/members/fold1_seed0,... \\
      [--set=NAME:WORKDIR,...] [--input=NAME:FOLDER,...] [--config.data.duke_dir=DIR]

Each --set is one recipe's fold models (one per fold, each validated on its own subjects).
Every model predicts its held-out scans once, through the one inference path
(serving.inference.predict_outputs), and scoring.score scores the same probabilities at every
sd (literature protocol, native resolution, order fix on; sd 0 = no smoothing). For a set,
each fold's sd is the one with the highest mean layer Dice over the set's other folds
(leave-one-fold-out), so a fold's gain is measured on subjects that chose nothing; `chosen_sd`
is the sd with the highest mean over all its folds (the setting to ship). A model's held-out
scans are its validation split, or, where its set has an --input, the labelled files of that
option's folder for it (one per fold model, in order; read as eval --input reads files, but
any unreadable one stops the run): for fold models trained without a validation split
(data.split=all), the subjects they held out. Every model is loaded and its scans read and
checked before any predicts: a folder holding a scan the model trained on (by name or pixels,
or from a volume it trained on) is refused, and so is a subject two fold models of a set
score. The output JSON is written atomically with provenance. `--config.data.duke_dir` reads
the data from a moved folder, as eval's. Bad input: one line, exit status 2.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import named_sets  # noqa: E402
from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()

from octseg_jax.config import overrides  # noqa: E402
from octseg_jax.errors import InputError  # noqa: E402
from octseg_jax.geometry import boundaries as geom  # noqa: E402
from octseg_jax.outputs.atomic import check_output_file, write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELD = "predict.smooth_sd_columns"          # the setting this script chooses


def parse_sets(texts) -> dict:
  """['NAME:WD,WD', ...] -> {NAME: [WD, ...]} (named_sets.parse; every workdir a folder, their
  folder names distinct)."""
  sets = named_sets.parse(texts, "WORKDIR")
  for name, workdirs in sets.items():
    folds = [os.path.basename(os.path.normpath(w)) for w in workdirs]
    if len(set(folds)) != len(folds):
      raise InputError(f"--set={name}:...: two workdirs share a folder name ({', '.join(folds)})")
    missing = [w for w in workdirs if not os.path.isdir(w)]
    if missing:
      raise InputError(f"--set={name}:...: {missing[0]} is not a folder")
  return sets


def parse_sds(text: str) -> list:
  """'0,2,4' -> [0.0, 2.0, 4.0]: distinct, each a valid predict.smooth_sd_columns (its schema
  check), with 0 (the unsmoothed reference)."""
  from octseg_jax.config import schema
  try:
    sds = [float(t) for t in text.split(",") if t.strip()]
  except ValueError:
    raise InputError(f"--sds={text}: expected comma-separated numbers") from None
  problems = [p for p in map(schema.FIELDS[FIELD].check, sds) if p]
  if problems:
    raise InputError(f"--sds={text}: {problems[0]}")
  if 0.0 not in sds or len(set(sds)) != len(sds):
    raise InputError(f"--sds={text}: expected distinct sds including 0")
  return sorted(sds)


def parse_inputs(texts, sets: dict) -> dict:
  """['NAME:FOLDER,...', ...] -> {NAME: [FOLDER, ...]}: one existing folder per fold model of
  the --set of that name, in its order."""
  folders = named_sets.parse(texts, "FOLDER", option="--input")
  for name, items in folders.items():
    if name not in sets:
      raise InputError(f"--input={name}:...: no --set is named {name!r}")
    if len(items) != len(sets[name]):
      raise InputError(f"--input={name}:...: {len(items)} folders for the set's "
                       f"{len(sets[name])} fold models (one each, in order)")
    missing = [f for f in items if not os.path.isdir(f)]
    if missing:
      raise InputError(f"--input={name}:...: {missing[0]} is not a folder")
  return folders


def claim_subjects(name: str, claimed: dict, subjects, workdir: str) -> None:
  """Adds a fold model's scored subjects to its set's `claimed` ({subject: workdir}), refusing
  one an earlier fold model of the set scores: leave-one-fold-out needs different eyes."""
  for subject in sorted({int(s) for s in subjects}):
    if subject in claimed:
      raise InputError(f"--set={name}: {shown(workdir)} and {shown(claimed[subject])} both "
                       f"score subject {subject}; a set's fold models must score different "
                       "subjects")
    claimed[subject] = workdir


def input_scans(trained, folder: str) -> dict:
  """The labelled scans of the files `folder` names (fold_scans' keys), read as eval's --input
  reads files (any unreadable one stops the run), with what was skipped and the one pixel
  size; refused when none is labelled or the model trained on one of them or its volume."""
  from octseg_jax.data import inputs
  from octseg_jax.modes import evaluate
  from octseg_jax.serving import inference
  files, skipped = inputs.list_inputs(folder)
  read = inputs.read_scaled(files, None, trained.config.data, None, stop_on_error=True,
                            require_masks=True)
  if not read:
    raise InputError(f"--input: {folder} holds no scan files")
  images, masks, fluid, subjects, names, scale = evaluate.read_arrays(read, folder)
  evaluate.check_labelled(masks, f"--input: {folder}")
  _, from_training = inference.training_scans(trained).flags(names, images)
  if any(from_training):
    raise InputError(f"--input: {folder}: {shown(trained.workdir)} trained on its scan "
                     f"{names[from_training.index(True)]} or that scan's volume; a fold "
                     "model is scored on eyes it never saw")
  return {"images": images, "masks": masks, "fluid": fluid, "subjects": subjects,
          "names": names, "data": shown(folder), "skipped": [shown(p) for p in skipped],
          "pixel_um": scale["row_um"]}


def fold_scans(workdir: str, eval_overrides, folder: str = None) -> dict:
  """A fold model (`trained`) with the scans it is scored on: its validation split, or the
  labelled files of `folder` (input_scans), and their pixel size."""
  from octseg_jax.modes import evaluate
  from octseg_jax.serving import inference
  trained = inference.load_trained(workdir, eval_overrides)
  if folder:
    return {"trained": trained, **input_scans(trained, folder)}
  images, masks, fluid, subjects, names = evaluate.validation_scans(trained)
  return {"trained": trained, "images": images, "masks": masks, "fluid": fluid,
          "subjects": subjects, "names": names, "data": evaluate.data_folder_text(trained),
          "pixel_um": float(trained.config.data.pixel_um)}


def load_sets(sets: dict, folders: dict, eval_overrides) -> dict:
  """{set: {fold name: fold_scans}} for every fold model of every set, each with its --input
  folder if its set has one, checked (claim_subjects) before any model predicts."""
  loaded = {}
  for name, workdirs in sets.items():
    claimed, loaded[name] = {}, {}
    for w, folder in zip(workdirs, folders.get(name, [None] * len(workdirs))):
      fold = fold_scans(w, eval_overrides, folder)
      claim_subjects(name, claimed, fold["subjects"], w)
      loaded[name][os.path.basename(os.path.normpath(w))] = fold
  return loaded


def fold_scores(fold: dict, sds) -> dict:
  """One fold model's held-out scores at every sd (scoring.score of one prediction of the
  scans of fold_scans), with what was scored."""
  from octseg_jax.learning import scoring
  from octseg_jax.modes import evaluate
  trained, masks, subjects, fluid = (fold[k] for k in ("trained", "masks", "subjects", "fluid"))
  probs = [o["probs"] for o in evaluate.predict_all(trained, fold["images"])]
  known = all(f is not None for f in fluid)
  unsmoothed = [geom.predicted_geometry(p) for p in probs]       # the order fix once per model
  by_sd = {}
  for sd in sds:
    geometry = [geom.smooth_geometry(g, sd) for g in unsmoothed]
    fix = scoring.score(probs, masks, subjects, fold["pixel_um"],
                        fluid=fluid if known else None, smooth_sd=sd,
                        geometry=geometry)["topology"]
    by_sd[f"{sd:g}"] = summary_of(fix)
  return {"workdir": shown(trained.workdir), "members": [shown(m.workdir) for m in trained.members],
          "flip": bool(getattr(trained, "flip", False)), "data": fold["data"],
          "subjects": sorted({int(s) for s in subjects}), "scans": len(fold["names"]),
          "pixel_um": fold["pixel_um"], "by_sd": by_sd} | (
              {"skipped": fold["skipped"]} if "skipped" in fold else {})


def shown(path: str) -> str:
  """A workdir as the record names it: relative to the checkout when inside it."""
  full = os.path.abspath(path)
  inside = os.path.commonpath([full, ROOT]) == ROOT
  return os.path.relpath(full, ROOT) if inside else os.path.normpath(full)


def summary_of(fix: dict) -> dict:
  """The numbers kept per sd from scoring.score's topology block."""
  g = fix["geometry"]
  out = {"mean_layer_dice": fix["literature"]["mean_layer_dice"],
         "layer_dice": fix["literature"]["layer_dice"], "boundary_mae_um": g["mae_um"],
         "boundary_signed_um": g["signed_um"], "mean_boundary_mae_um": float(np.mean(g["mae_um"]))}
  split = fix.get("by_fluid_columns")
  if split:
    groups = [k for k in ("without_fluid", "with_fluid") if k in split]
    out["mean_layer_dice_by_fluid_columns"] = {
        k: split[k]["literature"]["mean_layer_dice"] for k in groups}
    out["boundary_signed_um_by_fluid_columns"] = {
        k: split[k]["geometry"]["signed_um"] for k in groups}
  return out


def leave_one_fold_out(folds: dict, sds) -> dict:
  """Per fold: the sd with the best mean layer Dice over the other folds, and this fold's gain
  at that sd over sd 0; with 'chosen_sd', the best sd over all folds. None for one fold (no
  other fold to choose on)."""
  if len(folds) < 2:
    return None
  keys = [f"{sd:g}" for sd in sds]
  dice = np.array([[folds[f]["by_sd"][k]["mean_layer_dice"] for k in keys] for f in folds])
  out = {"per_fold": {}}
  for i, fold in enumerate(folds):
    others = np.delete(dice, i, axis=0).mean(axis=0)
    j = int(np.argmax(others))
    out["per_fold"][fold] = {"sd": sds[j], "gain": float(dice[i, j] - dice[i, 0])}
  out["mean_gain"] = float(np.mean([v["gain"] for v in out["per_fold"].values()]))
  out["chosen_sd"] = sds[int(np.argmax(dice.mean(axis=0)))]
  return out


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  rest, config_args = overrides.split_argv(argv)
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--output", required=True, help="the JSON to write")
  p.add_argument("--sds", default="0,2,4,6,8,12", help="smoothing sds in columns (with 0)")
  p.add_argument("--set", action="append", default=[], help="NAME:WORKDIR,WORKDIR,...")
  p.add_argument("--input", action="append", default=[],
                 help="NAME:FOLDER,FOLDER,...: the files each fold model of set NAME scores")
  a = p.parse_args(rest)
  start = time.perf_counter()
  from octseg_jax.runtime import provenance
  record = provenance.collect()                        # the code as the run starts
  try:
    check_output_file(a.output)
    eval_overrides = overrides.parse(config_args, "eval")
    if FIELD in eval_overrides:
      raise InputError(f"--config.{FIELD}: this script sets it (give --sds)")
    sds, sets = parse_sds(a.sds), parse_sets(a.set)
    if not sets:
      raise InputError("--set: give at least one NAME:WORKDIR,... set of fold models")
    loaded = load_sets(sets, parse_inputs(a.input, sets), eval_overrides)
    result = {"sds": sds, "sets": {}}
    for name, folds in loaded.items():
      scores = {fold: fold_scores(data, sds) for fold, data in folds.items()}
      result["sets"][name] = {"folds": scores, "cv": leave_one_fold_out(scores, sds)}
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  result["protocol"] = ("literature (mean layer Dice of the 7 layers), native resolution, "
                        "order fix on; each fold model on its own validation subjects, or on "
                        "the held-out files its set's --input names")
  result["provenance"] = record | {"wall_time_s": time.perf_counter() - start}
  write_json(a.output, result)
  for name, s in result["sets"].items():
    if s["cv"] is None:
      print(f"{name}: one fold model, no sd chosen (scores at every sd are in {a.output})")
      continue
    print(f"{name}: chosen sd {s['cv']['chosen_sd']:g} columns; leave-one-fold-out gain "
          f"{s['cv']['mean_gain']:+.4f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
