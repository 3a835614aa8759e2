"""--mode=predict: segment scans at their own resolution and write what a clinician reads.

Per input file NAME: NAME.npz with `pred` uint8 [N, H, W] (argmax), `pred_ordered` (the most
probable anatomically ordered labelling), `boundaries` float [N, 8, W] (sub-pixel rows from the
probabilities), `thickness_um` [N, 7, W], `names`; NAME_thickness.csv (per scan and column,
thickness of each layer in um); and per scan SCAN_overlay.png (boundaries drawn; the true ones
dashed when masks are given) and SCAN_thickness.png.
"""

import os

import numpy as np

from octseg_jax import layers_geometry as geom
from octseg_jax import plots
from octseg_jax.data import inputs
from octseg_jax.data.scans import LAYER_NAMES
from octseg_jax.io_utils import write_csv, write_npz


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


def run(workdir: str, input_path: str, output: str, overrides=None) -> None:
  from octseg_jax.inference import load_trained
  trained = load_trained(workdir, overrides)
  sets = inputs.load_path(input_path)
  os.makedirs(output, exist_ok=True)
  pixel_um = float(trained.config.data.pixel_um)
  for scans in sets:
    stem = os.path.splitext(os.path.basename(scans.source.rstrip("/")))[0]
    out = predict_set(trained, scans)
    write_npz(os.path.join(output, f"{stem}.npz"), names=np.array(scans.names), **out)
    rows = []
    for i, name in enumerate(scans.names):
      for col in range(out["thickness_um"].shape[-1]):
        rows.append([name, col] + [f"{v:.2f}" for v in out["thickness_um"][i, :, col]])
    write_csv(os.path.join(output, f"{stem}_thickness.csv"),
              ["scan", "column"] + [f"{n}_um" for n in LAYER_NAMES[1:]], rows)
    for i, name in enumerate(scans.names):
      true_b = true_t = None
      if scans.masks is not None:
        true_b = geom.boundaries_from_labels(scans.masks[i])
        true_t = geom.thickness_um(true_b, pixel_um)
      unsupported = ~geom.column_is_ordered(out["pred"][i])   # raw labelling out of order
      plots.boundary_overlay(os.path.join(output, f"{name}_overlay.png"), scans.images[i],
                             out["boundaries"][i], true_b, title=name, model=workdir,
                             unsupported=unsupported)
      plots.thickness_profile(os.path.join(output, f"{name}_thickness.png"),
                              out["thickness_um"][i], true_t, title=f"{name}: layer thickness",
                              model=workdir, unsupported=unsupported)
    print(f"predicted {len(scans)} scans of {scans.source} -> {output}/{stem}.npz")
