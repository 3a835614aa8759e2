"""--mode=predict: segment scans at their own resolution and write what a clinician reads.

Per input file NAME: NAME.npz with `pred` uint8 [N, H, W] (argmax), `pred_ordered` (the most
probable anatomically ordered labelling), `boundaries` float [N, 8, W] (sub-pixel rows from the
probabilities), `thickness_um` [N, 7, W], `names`; NAME_thickness.csv (per scan and column,
thickness of each layer in um); and per scan SCAN_overlay.png (boundaries drawn; the true ones
dashed when masks are given) and SCAN_thickness.png. Volumes (data.volumes.is_volume) also get
NAME_thickness_maps.png, NAME_etdrs.csv, NAME.eye and map/grid keys in NAME.npz
(octseg_jax.volume_report), with thickness at the file's axial scale.
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


def run(workdir: str, input_path: str, output: str, volume: bool = False,
        laterality: str = None, fovea: str = None, overrides=None) -> None:
  """Volumes (scanner files, .mat, .npz with scale_mm or with `volume`) also get the en-face
  maps, ETDRS table and .eye of octseg_jax.volume_report; laterality (--laterality) applies
  where the file has none, fovea (--fovea=x_mm,y_mm) replaces the automatic one; overrides:
  checked inference settings (inference_overrides)."""
  from octseg_jax import volume_report
  from octseg_jax.inference import load_trained
  fovea_mm = volume_report.parse_fovea(fovea)
  trained = load_trained(workdir, overrides)
  sets = inputs.load_path(input_path, volume_options={"force": volume, "laterality": laterality})
  os.makedirs(output, exist_ok=True)
  pixel_um = float(trained.config.data.pixel_um)
  for scans in sets:
    stem = os.path.splitext(os.path.basename(scans.source.rstrip("/")))[0]
    out = predict_set(trained, scans)
    extra = {}
    if scans.volume is not None:   # the file's axial scale, not the training config's
      out["thickness_um"] = geom.thickness_um(out["boundaries"], scans.volume.scale_mm[1] * 1e3)
      extra = volume_report.write(output, stem, scans.volume, out["boundaries"], fovea_mm)
    write_npz(os.path.join(output, f"{stem}.npz"), names=np.array(scans.names), **out, **extra)
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
