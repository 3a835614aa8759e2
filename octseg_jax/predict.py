"""--mode=predict: segment scans at their own resolution and write what a clinician reads.

Per input file NAME (NAME = the file name without extension, or with it where two inputs
share a stem): exactly one NAME.npz with `pred` uint8 [N, H, W] (argmax; N = the scans of that
file), `pred_ordered` (the most probable anatomically ordered labelling), `boundaries` float
[N, 8, W] (sub-pixel rows from the probabilities), `thickness_um` [N, 7, W], `names`;
NAME_thickness.csv (per scan and column, thickness of each layer in um); and per scan
SCAN_overlay.png (boundaries drawn; the true ones dashed when masks are given) and
SCAN_thickness.png for the scans that --figures selects (default: the first of each file). Names never replace an input or another output of the run (duplicates are
numbered). A folder is processed file by file: unreadable files are listed in errors.csv,
files without a scan extension are skipped, and manifest.json is written last.
"""

import os
from typing import Dict

import numpy as np

from octseg_jax import layers_geometry as geom
from octseg_jax import plots
from octseg_jax.data import inputs
from octseg_jax.data.scans import LAYER_NAMES, MAX_IMAGE_SIDE
from octseg_jax.errors import InputError
from octseg_jax.io_utils import write_csv, write_npz
from octseg_jax.outputs import RunOutputs, check_output_folder, unique_stems

FILE_SUFFIXES = (".npz", "_thickness.csv")            # per input file
SCAN_SUFFIXES = ("_overlay.png", "_thickness.png")     # per scan (figures)


def predict_set(trained, scans):
  """Predictions and geometry for one ScanSet (arrays, no I/O)."""
  from octseg_jax.inference import predict_probs
  probs = predict_probs(trained, list(scans.images))
  pixel_um = float(trained.config.data.pixel_um)
  pred = np.stack([np.argmax(p, -1) for p in probs]).astype(np.uint8)
  ordered = np.stack([geom.enforce_topology(np.log(np.clip(p, 1e-7, 1)))[0] for p in probs])
  bounds = np.stack([geom.boundaries_from_probs(p, o) for p, o in zip(probs, ordered)])
  return {"pred": pred, "pred_ordered": ordered, "boundaries": bounds,
          "thickness_um": geom.thickness_um(bounds, pixel_um)}


def thickness_rows(names, thickness_um: np.ndarray) -> list:
  """CSV rows [scan, column, NFL_um, ...] from thickness [N, 7, W]."""
  rows = []
  for i, name in enumerate(names):
    for col in range(thickness_um.shape[-1]):
      rows.append([name, col] + [f"{v:.2f}" for v in thickness_um[i, :, col]])
  return rows


FIGURES = ("none", "first", "all")


def figure_scans(figures: str, count: int) -> range:
  """Indices of the scans of a file that get figures: none, the first, or all."""
  if figures not in FIGURES:
    raise InputError(f"--figures={figures}: valid values are {', '.join(FIGURES)}")
  return range({"none": 0, "first": min(1, count), "all": count}[figures])


def write_file_outputs(run: RunOutputs, stem: str, scans, out: Dict, pixel_um: float,
                       figures: str = "all") -> str:
  """Writes the prediction file, thickness CSV and figures (`figures`: none, first, all) of
  one input file; returns the prediction file's path."""
  npz_path, csv_path = run.claim(stem, FILE_SUFFIXES)
  write_npz(npz_path, names=np.array(scans.names), **out)
  write_csv(csv_path, ["scan", "column"] + [f"{n}_um" for n in LAYER_NAMES[1:]],
            thickness_rows(scans.names, out["thickness_um"]))
  run.wrote(npz_path, csv_path)
  for i in figure_scans(figures, len(scans)):
    name = scans.names[i]
    true_b = true_t = None
    if scans.masks is not None:
      true_b = geom.boundaries_from_labels(scans.masks[i])
      true_t = geom.thickness_um(true_b, pixel_um)
    overlay, thickness = run.claim(name, SCAN_SUFFIXES)
    plots.boundary_overlay(overlay, scans.images[i], out["boundaries"][i], true_b, title=name)
    plots.thickness_profile(thickness, out["thickness_um"][i], true_t,
                            title=f"{name}: layer thickness")
    run.wrote(overlay, thickness)
  return npz_path


def run(workdir: str, input_path: str, output: str, figures: str = "first") -> Dict:
  """Predicts every readable scan file that `input_path` names into the folder `output`.

  figures: which scans of each file get an overlay and a thickness figure ('none', 'first',
    'all'); the prediction file and the thickness CSV are always written.
  Raises an InputError (after writing the outputs of the readable files, errors.csv and
  manifest.json) when any file of a folder could not be read; a single bad file fails at once.
  """
  from octseg_jax import train
  from octseg_jax.inference import load_trained
  figure_scans(figures, 0)                      # an unknown value fails before any work
  max_side = int(train.load_config(workdir).data.get("max_image_side", MAX_IMAGE_SIDE))
  files, skipped = inputs.list_inputs(input_path)
  folder = check_output_folder(output)
  outputs = RunOutputs(folder, files, "predict")
  stems = unique_stems(files)
  for stem in stems:
    outputs.refuse_inputs(stem, FILE_SUFFIXES)
  single = os.path.isfile(input_path)
  first = inputs.load_file(files[0], max_side=max_side) if single else None  # fail before loading
  trained = load_trained(workdir)
  pixel_um = float(trained.config.data.pixel_um)
  outputs.start()
  for path in skipped:
    outputs.skipped(path, "not a scan file (no scan extension)")
  num_scans = num_files = 0
  stem_of = dict(zip(files, stems))
  readable = [(files[0], first)] if single else inputs.read_files(files, outputs.failed, max_side)
  for path, scans in readable:
    written = write_file_outputs(outputs, stem_of[path], scans, predict_set(trained, scans),
                                 pixel_um, figures)
    num_scans, num_files = num_scans + len(scans), num_files + 1
    print(f"predicted {len(scans)} scans of {path} -> {written}")
  summary = {"input": input_path, "workdir": workdir, "files": len(files),
             "files_predicted": num_files, "scans": num_scans}
  outputs.finish(summary)
  print(f"predict: {num_scans} scans of {num_files} files -> {folder}; "
        f"{outputs.num_failed} failed, {len(skipped)} skipped"
        + (f" (listed in {folder}/errors.csv)" if outputs.problems else ""))
  if outputs.num_failed:
    raise InputError(f"{input_path}: {outputs.num_failed} of {len(files)} files could not be "
                     f"read (listed in {folder}/errors.csv)")
  return summary
