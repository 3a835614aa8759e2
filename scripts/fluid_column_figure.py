"""Draws where a fold model's layer error lives: the held-out B-scan whose columns with fluid
have the largest OPL/ONL boundary error, with the model's boundaries (order fix on) and fluid
(a model with the fluid head), and the grader's.

  python scripts/fluid_column_figure.py --workdir=pretrained/members/fold2_seed0 \\
      --output=docs/figures/fluid_columns_fold2.png

The scans are the workdir's validation split (subjects the model never trained on);
--duke_dir reads them from another folder, as eval's --config.data.duke_dir. Bad input: one
line, exit status 2.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.anatomy import BOUNDARY_NAMES, FLUID_THRESHOLD  # noqa: E402
from octseg_jax.data import preprocessing, volumes  # noqa: E402
from octseg_jax.errors import InputError  # noqa: E402
from octseg_jax.geometry import boundaries as geom  # noqa: E402
from octseg_jax.outputs.atomic import check_output_file  # noqa: E402

BOUNDARY = BOUNDARY_NAMES.index("OPL/ONL")


def fluid_column_error(pred_bounds, true_bounds, fluid, boundary: int = BOUNDARY) -> float:
  """Mean absolute error (rows) of one boundary over the columns with fluid where both
  boundaries are known; NaN when there is no such column. bounds [8, W], fluid [H, W]."""
  diff = np.abs(pred_bounds[boundary] - true_bounds[boundary])
  diff = diff[preprocessing.fluid_columns(fluid) & np.isfinite(diff)]
  return float(diff.mean()) if diff.size else float("nan")


def worst_scan(pred_bounds, true_bounds, fluids) -> int:
  """Index of the scan with the largest fluid_column_error (scans without one are skipped)."""
  errors = [fluid_column_error(p, t, f) for p, t, f in zip(pred_bounds, true_bounds, fluids)]
  if all(np.isnan(errors)):
    raise InputError("no validation scan has a column with fluid and a known "
                     f"{BOUNDARY_NAMES[BOUNDARY]} boundary")
  return int(np.nanargmax(errors))


def draw(workdir: str, output: str, duke_dir=None) -> str:
  """Predicts the workdir's validation scans and draws the worst one into `output`."""
  from octseg_jax.modes import evaluate
  from octseg_jax.outputs import plots
  from octseg_jax.serving import inference
  trained = inference.load_trained(workdir, {"data.duke_dir": duke_dir} if duke_dir else None)
  images, masks, fluid, _, names = evaluate.validation_scans(trained)
  if any(f is None for f in fluid):
    raise InputError(f"{workdir}: its validation scans carry no fluid annotation")
  outputs = inference.predict_outputs(trained, images, int(trained.config.train.eval_batch_size))
  smooth_sd = float(trained.config.predict.smooth_sd_columns)
  pred = [geom.boundaries_from_labels(geom.predicted_geometry(o["probs"], smooth_sd, False)[0])
          for o in outputs]
  true = [geom.boundaries_from_labels(m) for m in masks]
  i = worst_scan(pred, true, fluid)
  row_um = float(trained.config.data.pixel_um)
  error_um = fluid_column_error(pred[i], true[i], fluid[i]) * row_um
  plots.boundary_overlay(
      output, images[i], pred[i], true[i], true_fluid=fluid[i],
      fluid=((outputs[i]["fluid"] > FLUID_THRESHOLD).astype(np.uint8)
             if "fluid" in outputs[i] else None),
      pixel_um=(row_um, 1e3 * volumes.DUKE_DME_SCALE_MM[2]
                if trained.config.data.source == "duke" else None),
      title=(f"{names[i]}, held out by {os.path.normpath(workdir)}: the scan whose fluid columns "
             f"have the largest {BOUNDARY_NAMES[BOUNDARY]} error ({error_um:.1f} um mean "
             "absolute there; order fix on)"))
  return names[i]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="a training workdir (one fold model)")
  p.add_argument("--output", required=True, help="the PNG to write")
  p.add_argument("--duke_dir", default=None, help="where the Duke data lives, if moved")
  a = p.parse_args(argv)
  try:
    check_output_file(a.output)
    name = draw(a.workdir, a.output, a.duke_dir)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"{a.output}: {name}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
