"""--mode=predict: segment scans at their own resolution and write what a clinician reads.

Per input file NAME (NAME = the file name without extension, or with it where two inputs
share a stem): exactly one NAME.npz with `pred` uint8 [N, H, W] (argmax; N = the scans of that
file), `pred_ordered` (the most probable anatomically ordered labelling), `boundaries` float
[N, 8, W] (sub-pixel rows from the probabilities; both smoothed along the B-scan with
predict.smooth_sd_columns: geometry.boundaries.predicted_geometry), `thickness_um` [N, 7, W],
`supported` bool [N, W] (the columns measured: the CSV's thickness is empty elsewhere, where
`boundaries` and `thickness_um` are the order fix's estimate, or NaN where a boundary was not
found), `boundary_position_sd_um` [N, 8, W] (how sharply the probabilities place each
boundary: geometry.boundaries.boundary_position_sd), `names`, and for a model with the heads
`fluid` uint8 [N, H, W] (fluid prob > 0.5),
`fluid_prob` float16 [N, H, W] and `boundaries_head` [N, 8, W] (the boundary head's ordered rows);
NAME_thickness.csv (per scan and column, thickness of each layer in um); and per scan
SCAN_overlay.png (boundaries drawn; on annotated scans the true ones and the grader's fluid
dashed) and SCAN_thickness.png for the scans that --figures selects (default: a volume's B-scan
nearest its fovea, the first scan of other files). Names never replace an input or another
output of the run (duplicates are numbered). A folder is processed file by file: unreadable
files are listed in errors.csv, files without a scan extension are skipped, and manifest.json is
written last. Volumes (data.volumes.is_volume) also get NAME_thickness_maps.png, NAME_etdrs.csv,
NAME.eye and map/grid keys in NAME.npz (octseg_jax.outputs.volume_report), with thickness at the
file's axial scale.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, Iterator, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from octseg_jax.geometry import boundaries as geom
from octseg_jax.learning import uncertainty
from octseg_jax.outputs import plots
from octseg_jax.outputs import report
from octseg_jax.data import inputs, volumes
from octseg_jax.anatomy import FLUID_THRESHOLD, IGNORE, LAYER_NAMES
from octseg_jax.errors import InputError
from octseg_jax.outputs.atomic import StreamingNpz, write_csv
from octseg_jax.outputs.folder_run import RunOutputs, check_output_folder, unique_stems

FILE_SUFFIXES = (".npz", "_thickness.csv")            # per input file
SCAN_SUFFIXES = ("_overlay.png", "_thickness.png")     # per scan (figures)
VOLUME_SUFFIXES = ("_thickness_maps.png", "_etdrs.csv", ".eye")   # per input volume


CPU_BATCH_SIZE = 1  # scans per network call on CPU (see network_batch_size)
GEOMETRY_SCANS = 1  # scans per geometry call: measured faster than 2 or 8 (cache), same results


class ColumnFlag(NamedTuple):
  """What flags a column `uncertain` in predict (column_flag)."""
  key: str                   # its uncertainty [N, 8, W] (um): the prediction file's key, and
                             # write_predictions' result's
  config_field: str          # the threshold's field, as manifest.json names it
  threshold_um: float
  legend: Tuple[str, ...]    # the figures' words for it, one line each, the rule last
  console: str               # the console's, after "columns where"


def column_flag(trained) -> Optional[ColumnFlag]:
  """The flag of uncertainty.flag_rule, named for predict's outputs: an ensemble (several
  views) flags the columns where the members' spread of some boundary exceeds
  predict.uncertain_um, when it is set; a single model, or an ensemble whose uncertain_um is 0,
  those where some boundary's position sd exceeds predict.uncertain_position_sd_um, when it is
  set (pretrained/'s thresholds were chosen by cross-validation: docs/results.md); None
  otherwise."""
  config = trained.config.predict
  rule = uncertainty.flag_rule(trained.num_views > 1, config.uncertain_um,
                               config.uncertain_position_sd_um)
  if rule is None:
    return None
  kind, t = rule
  if kind == uncertainty.SPREAD:
    return ColumnFlag("boundary_sd_um", "uncertain_um", t, ("ensemble", "members disagree",
                      f"their sd of a boundary > {t:.4g} um"), "the ensemble's members disagree "
                      f"by more than {t:.4g} um")
  return ColumnFlag("boundary_position_sd_um", "uncertain_position_sd_um", t,
                    ("a boundary", "spread over rows", f"its position sd > {t:.4g} um"),
                    f"some boundary's position sd (how widely the model's probabilities spread it) "
                    f"exceeds {t:.4g} um")


def print_flag_note(trained, overrides=None) -> None:
  """A console note where a run has no `uncertain` flag (a single model without
  predict.uncertain_position_sd_um, an ensemble without either threshold), where that option
  was given for an ensemble that flags by its members' spread instead (column_flag), or where
  the spread's threshold was given to one view, which has no spread."""
  field, given = "predict.uncertain_position_sd_um", overrides or {}
  flag = column_flag(trained)
  if flag and flag.config_field == "uncertain_um" and field in given:
    print(f"note: this ensemble flags columns by its members' spread (--config.predict."
          f"uncertain_um); --config.{field} applies where that is 0, and to a single model")
  elif trained.num_views == 1 and given.get("predict.uncertain_um", 0) > 0:
    print(f"note: --config.predict.uncertain_um (the members' spread) applies to an ensemble; "
          f"a single model flags columns by its boundaries' position sd, where --config.{field} "
          "is set")
  elif flag is None and trained.num_views == 1:
    print(f"note: no `uncertain` flag: a single model flags columns by its boundaries' position "
          f"sd where --config.{field} is set (0: no flag; pretrained/ sets it for "
          f"--config.predict.members=1)")
  elif flag is None:
    print(f"note: no `uncertain` flag: --config.predict.uncertain_um (the members' spread) and "
          f"--config.{field} (the position sd) are both 0")


def batch_geometry(probs: np.ndarray, smooth_sd: float = 0.0) -> Dict[str, np.ndarray]:
  """Label maps and geometry of a batch of scans of one size, vectorised over the batch.

  probs: float32 [B, H, W, K] at the scans' own resolution. Returns pred and pred_ordered
  uint8 [B, H, W] and boundaries float [B, 8, W] (sub-pixel): geometry.predicted_geometry,
  smoothed along the B-scan with smooth_sd > 0 (the config's predict.smooth_sd_columns), with
  each boundary's position sd in rows (position_sd_rows [B, 8, W],
  geometry.geometry_and_position_sd); and supported bool [B, W] (geometry.supported_columns;
  the other columns are shaded in the figures and have no thickness in the CSV).
  """
  (ordered, _, bounds), position_sd = geom.geometry_and_position_sd(probs, smooth_sd,
                                                                     report_changed=False)
  pred = np.argmax(probs, -1).astype(np.uint8)
  return {"pred": pred, "pred_ordered": ordered, "boundaries": bounds,
          "position_sd_rows": position_sd, "supported": geom.supported_columns(pred, bounds)}


def stream_batches(trained, images: np.ndarray, batch_size: int = CPU_BATCH_SIZE
                   ) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
  """Yields (first scan index, outputs of the batch) for the scans [N, H, W] of one file, batch
  by batch through the one inference path (serving.inference.stream: batch k+1 runs on the
  device while the host maps batch k back); probabilities are never held for the whole file.
  The outputs are batch_geometry's, the heads' (head_outputs) and an ensemble's uncertainty
  (entropy float16 [b, H, W], boundary_sd_rows [b, 8, W])."""
  from octseg_jax.serving.inference import stream
  start = 0
  for scans in stream(trained, list(images), batch_size):
    yield start, scan_arrays(scans, float(trained.config.predict.smooth_sd_columns))
    start += len(scans)


def network_batch_size(trained, overrides=None) -> int:
  """Scans per network call of predict; memory is bounded by it, not by the file.

  The config's train.eval_batch_size where the user set it for this run
  (--config.train.eval_batch_size) or on an accelerator; on CPU one scan per call, because
  one scan's activations stay in the caches: with the v1 shipped model on the 2-core machine
  both the network alone and the whole predict were faster one scan at a time than in batches
  of 16, with a fraction of the memory (benchmarks/predict_throughput.py,
  docs/results/cpu_2core/predict_throughput*.json).
  """
  import jax
  if (overrides and "train.eval_batch_size" in overrides) or jax.default_backend() != "cpu":
    return int(trained.config.train.eval_batch_size)
  return CPU_BATCH_SIZE


def scan_arrays(scans, smooth_sd: float = 0.0) -> Dict[str, np.ndarray]:
  """The prediction-file arrays of a batch of scans of one size (serving.inference.finish
  outputs), stacked; geometry is computed GEOMETRY_SCANS scans at a time: the float64
  intermediates of a full batch at native size would take ~1 GB, and on the 2-core machine one
  scan per call measured faster than 2 (0.24 against 0.40 s per scan)."""
  parts = []
  for i in range(0, len(scans), GEOMETRY_SCANS):
    chunk = scans[i:i + GEOMETRY_SCANS]
    raw = np.stack([scan["probs"] for scan in chunk])                       # [g, H, W, K]
    parts.append(batch_geometry(raw, smooth_sd))
    parts[-1].update(head_outputs(chunk))
    if "boundary_sd_rows" in chunk[0]:
      parts[-1].update(entropy=uncertainty.predictive_entropy(raw).astype(np.float16),
                       boundary_sd_rows=np.stack([scan["boundary_sd_rows"] for scan in chunk]))
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def head_outputs(restored) -> Dict[str, np.ndarray]:
  """The prediction-file arrays of the heads for scans of one size: fluid (uint8, p >
  FLUID_THRESHOLD), fluid_prob (float16) and boundaries_head (the boundary head's rows [8, W]);
  {} without heads."""
  out = {}
  if "fluid" in restored[0]:
    prob = np.stack([r["fluid"] for r in restored])
    out.update(fluid=(prob > FLUID_THRESHOLD).astype(np.uint8), fluid_prob=prob.astype(np.float16))
  if "boundaries" in restored[0]:
    out["boundaries_head"] = np.stack([r["boundaries"] for r in restored])
  return out


def write_predictions(trained, scans, path: str, batch_size: int, pixel_um: float,
                      extra_keys=None, keep: Sequence[int] = ()) -> Dict:
  """Streams the predictions of one ScanSet into the prediction file `path` (finalised
  atomically) and returns its boundaries [N, 8, W], thickness_um [N, 7, W] (rows of
  `pixel_um`), supported [N, W], the heads' fluid_um [N, W] (NaN where no retina was found:
  geom.fluid_where_measured), an ensemble's boundary_sd_um [N, 8, W] (None without them), each
  boundary's boundary_position_sd_um [N, 8, W] and
  fluid_kept {i: fluid [H, W], np.packbits along W} for the scans `keep` (figures; a volume's
  wait there for its fovea). extra_keys: (boundaries, fluid_um, supported) -> {key: array}
  added to the file (volume maps, grid)."""
  n, h, w = scans.images.shape
  streamed = {"pred": np.uint8, "pred_ordered": np.uint8}
  if "fluid" in trained.head_names:
    streamed.update(fluid=np.uint8, fluid_prob=np.float16)
  if trained.num_views > 1:
    streamed.update(entropy=np.float16)
  writer = StreamingNpz(path, {k: ((n, h, w), dtype) for k, dtype in streamed.items()})
  fluid_kept = {}
  try:
    per_scan = {}                        # batch_geometry's and the heads' arrays per scan [N, ...]
    for start, out in stream_batches(trained, scans.images, batch_size):
      fluid_kept.update({i: np.packbits(out["fluid"][i - start], axis=-1) for i in keep
                         if start <= i < start + len(out["pred"]) and "fluid" in out})
      for key in streamed:
        writer.append(key, out[key])
      if "fluid" in out:
        out["fluid_rows"] = out["fluid"].sum(axis=1)                  # fluid pixels per column
      for key in PER_SCAN_KEYS:
        if key in out:
          dtype = np.float64 if out[key].dtype.kind in "fiu" else out[key].dtype
          per_scan.setdefault(key, np.empty((n,) + out[key].shape[1:], dtype))
          per_scan[key][start:start + len(out["pred"])] = out[key]
    found = finish_predictions(writer, scans.names, per_scan, pixel_um, extra_keys)
  except BaseException:
    writer.abort()
    raise
  return {**found, "fluid_kept": fluid_kept}


PER_SCAN_KEYS = ("boundaries", "supported", "position_sd_rows", "boundaries_head",
                 "boundary_sd_rows", "fluid_rows")   # write_predictions keeps them per scan


def finish_predictions(writer, names, per_scan: Dict, pixel_um: float, extra_keys) -> Dict:
  """The prediction file's per-scan keys from write_predictions' arrays (boundaries, thickness,
  supported, each boundary's position sd and an ensemble's spread in um, the boundary head's
  rows) and extra_keys', then the file closed; returns what write_predictions returns."""
  bounds, supported = per_scan["boundaries"], per_scan["supported"]
  thickness = geom.thickness_um(bounds, pixel_um)
  position_sd_um = per_scan["position_sd_rows"] * pixel_um
  writer.small.update(names=np.array(names), boundaries=bounds, thickness_um=thickness,
                      supported=supported,
                      boundary_position_sd_um=position_sd_um)
  if "boundaries_head" in per_scan:
    writer.small.update(boundaries_head=per_scan["boundaries_head"])
  sd_um = per_scan["boundary_sd_rows"] * pixel_um if "boundary_sd_rows" in per_scan else None
  if sd_um is not None:
    writer.small.update(boundary_sd_um=sd_um)
  fluid_um = (geom.fluid_where_measured(per_scan["fluid_rows"] * pixel_um, bounds)
              if "fluid_rows" in per_scan else None)
  if extra_keys is not None:
    writer.small.update(extra_keys(bounds, fluid_um, supported))
  writer.close()
  return {"boundaries": bounds, "thickness_um": thickness, "fluid_um": fluid_um,
          "boundary_sd_um": sd_um, "boundary_position_sd_um": position_sd_um,
          "supported": supported}


def thickness_rows(names, thickness_um: np.ndarray, supported: np.ndarray, extra=None) -> list:
  """CSV rows [scan, column, NFL_um, ..., supported, extra columns] from thickness [N, 7, W]
  and supported [N, W] (thickness left empty where a column is not supported); extra:
  {column name: [N, W] of cell texts} (see extra_columns)."""
  extra = extra or {}
  rows = []
  for i, name in enumerate(names):
    for col in range(thickness_um.shape[-1]):
      ok = bool(supported[i, col])
      rows.append([name, col] + [f"{v:.2f}" if ok else "" for v in thickness_um[i, :, col]]
                  + [int(ok)] + [cells[i][col] for cells in extra.values()])
  return rows


def extra_columns(out: Dict, flag: Optional[ColumnFlag]) -> Dict[str, list]:
  """The thickness CSV's optional columns as cell texts [N][W]: with the fluid head fluid_um
  (empty where no retina was found, NaN in out["fluid_um"]; a B-scan's fluid area is a
  summary.csv column, not repeated on every column's row); with a column flag (column_flag)
  `uncertain` (1 where the flag's uncertainty of some boundary exceeds its threshold; empty
  where the column is not supported, as its thickness is), that threshold
  (uncertain_threshold_um) and the uncertainty it applies to (uncertain_by: its key in NAME.npz,
  boundary_sd_um or boundary_position_sd_um)."""
  cols = {}
  if out["fluid_um"] is not None:
    cols["fluid_um"] = [["" if np.isnan(v) else f"{v:.2f}" for v in scan]
                        for scan in out["fluid_um"]]
  if flag is not None:
    cols["uncertain"] = [[str(int(f)) if ok else "" for f, ok in
                          zip(uncertainty.flag_columns(sd, flag.threshold_um), supported)]
                         for sd, supported in zip(out[flag.key], out["supported"])]
    cols["uncertain_threshold_um"] = [[f"{flag.threshold_um:.4g}"] * sd.shape[-1]
                                      for sd in out[flag.key]]
    cols["uncertain_by"] = [[flag.key] * sd.shape[-1] for sd in out[flag.key]]
  return cols


def summary_header(trained) -> list:
  """Columns of summary.csv (one row per scan of the run)."""
  header = ["file", "scan_index", "scan", "row_um", "col_um", "scale_source", "supported_share",
            "low_support", "in_training", "training_volume"]
  header += [f"{n}_um" for n in LAYER_NAMES[1:]] + ["total_um"]
  if "fluid" in trained.head_names:
    header += ["fluid_area_mm2"]
  if column_flag(trained) is not None:
    header += ["uncertain_columns"]
  return header


def fluid_area_text(fluid_um: np.ndarray, col_mm) -> str:
  """A B-scan's fluid area (mm2) from its fluid heights per column [W] (um; NaN where no retina
  was found), over the columns with a retina; empty without a lateral pixel size col_mm or
  without any such column."""
  if col_mm is None or np.isnan(fluid_um).all():
    return ""
  return f"{np.nansum(fluid_um) * 1e-3 * col_mm:.5f}"


def summary_rows(path: str, scans, out: Dict, scale: Dict, extra: Dict, seen) -> list:
  """summary.csv rows of one input file: per scan its scale, the share of supported columns
  and three flags, `low_support` (a share below geom.LOW_SUPPORT: then no thickness values, as
  an ETDRS sector less than half measured has none), `in_training` and `training_volume`
  (`seen`, TrainingScans.flags: one of the model's training scans by name or pixels; that, or
  another B-scan of a volume it trained on), each layer's and the total thickness averaged over
  the supported columns (um), the fluid area (mm2) and the count of uncertain columns."""
  rows = []
  col_mm = None if scale["col_um"] is None else scale["col_um"] / 1e3
  for i, name in enumerate(scans.names):
    ok = out["supported"][i]
    low = bool(geom.low_support(ok))
    t = out["thickness_um"][i][:, ok]                                   # [7, supported]
    means = [""] * 7 if low or not ok.any() else [f"{v:.2f}" for v in t.mean(axis=1)]
    total = "" if low or not ok.any() else f"{t.sum(axis=0).mean():.2f}"
    row = [path, i, name, f"{scale['row_um']:.4g}",
           "" if col_mm is None else f"{scale['col_um']:.4g}", scale["source"],
           f"{ok.mean():.3f}", int(low), int(seen[0][i]), int(seen[1][i]),
           *means, total]
    if out.get("fluid_um") is not None:
      row.append(fluid_area_text(out["fluid_um"][i], col_mm))
    if "uncertain" in extra:       # empty where no column is supported: nothing to flag
      row.append(sum(c == "1" for c in extra["uncertain"][i]) if ok.any() else "")
    rows.append(row)
  return rows


def figure_scans(figures: str, count: int, positions_mm=None, fovea=None) -> Dict[int, str]:
  """The scans of a file that get figures, {index: a line the title adds}: none, the first, all,
  or (fovea) for a volume (positions_mm: its B-scan positions [N]) the B-scan nearest its fovea
  (fovea: (fovea_mm (x, y) in the maps' mm, where it came from: volume_report.FOVEA_FOUND...);
  before it is known, every B-scan, whose fluid masks are kept until then) and for other files
  the first scan."""
  if figures not in plots.FIGURES:
    raise InputError(f"--figures={figures}: valid values are {', '.join(plots.FIGURES)}")
  if figures == "fovea" and positions_mm is not None:
    if fovea is None:
      return dict.fromkeys(range(count), "")
    (_, y), source = fovea
    nearest = int(np.argmin(np.abs(np.asarray(positions_mm, np.float64) - y)))
    return {nearest: f"\nthe B-scan nearest the fovea ({source}; y {y:.2f} mm)"}
  first = min(1, count)
  return dict.fromkeys(range({"none": 0, "first": first, "fovea": first, "all": count}[figures]),
                       "")


def write_file_outputs(run: RunOutputs, stem: str, scans, trained,
                       figures: str = plots.DEFAULT_FIGURES,
                       fovea_mm=None, batch_size: int = CPU_BATCH_SIZE,
                       pixel_um_option=None) -> Dict:
  """Predicts one input file (`batch_size` scans per network call) and writes its prediction
  file, thickness CSV, figures (`figures`: figure_scans) and, for a volume, its maps, ETDRS
  table and .eye. Returns the prediction file's `path`, its `scale` (inputs.resolve_scale), for a
  volume its `laterality` ({'laterality', 'source'}; None otherwise), with a column flag
  `uncertain_scans` (how many scans have an uncertain column; None without), `low_support`
  (how many scans have every layer's thickness in fewer than geom.LOW_SUPPORT of their
  columns), its `summary` rows of summary.csv and its `training` counts (how many of its scans
  the model trained on, and how many are from volumes it trained on: training_overlap)."""
  from octseg_jax.outputs import volume_report
  from octseg_jax.serving.inference import overlap_counts, training_scans
  scale = inputs.resolve_scale(scans, pixel_um_option, float(trained.config.data.pixel_um))
  vol = scans.volume
  if vol is not None:
    volume_report.check_fovea(vol, fovea_mm)            # before any output of this file
  npz_path, csv_path, *vol_paths = run.claim(
      stem, FILE_SUFFIXES + (VOLUME_SUFFIXES if vol is not None else ()))
  pixel_um = scale["row_um"]
  col_mm = None if scale["col_um"] is None else scale["col_um"] / 1e3
  base = npz_path[:-len(".npz")]
  seen = training_scans(trained).flags(scans.names, scans.images)    # fingerprinted once
  found = {}                   # the volume report's keys (its fovea decides --figures=fovea)

  def extra_keys(bounds, fluid_um, supported):
    found.update(volume_report.write(
        os.path.dirname(base), os.path.basename(base), vol, bounds, fovea_mm, fluid_um,
        trained.workdir, supported,
        report.training_volume_title(sum(seen[0]), sum(seen[1]), len(scans))))
    return found
  positions = None if vol is None else vol.positions_mm
  given = None if vol is None or fovea_mm is None else (fovea_mm, volume_report.FOVEA_GIVEN)
  out = write_predictions(trained, scans, npz_path, batch_size, pixel_um,
                          None if vol is None else extra_keys,
                          keep=figure_scans(figures, len(scans), positions, given))
  drawn = figure_scans(figures, len(scans), positions, None if vol is None else (
      found["fovea_mm"], str(found["fovea_source"])))
  out["fluid_kept"] = {i: out["fluid_kept"][i] for i in drawn if i in out["fluid_kept"]}
  flag = column_flag(trained)
  extra = extra_columns(out, flag)
  cols = out["supported"].shape[1]
  extra.update(row_um=[[f"{pixel_um:.4g}"] * cols] * len(scans),
               col_um=[["" if col_mm is None else f"{col_mm * 1e3:.4g}"] * cols] * len(scans),
               scale_source=[[scale["source"]] * cols] * len(scans))
  write_csv(csv_path, ["scan", "column"] + [f"{n}_um" for n in LAYER_NAMES[1:]]
            + ["supported"] + list(extra),
            thickness_rows(scans.names, out["thickness_um"], out["supported"], extra))
  run.wrote(npz_path, csv_path, *[p for p in vol_paths if os.path.exists(p)])
  flags = None if "uncertain" not in extra else [np.array(r) == "1" for r in extra["uncertain"]]
  draw_figures(run, scans, out, drawn, flags, model_label(trained), scale, flag, seen)
  side = None if vol is None else {"laterality": vol.laterality,
                                    "source": vol.laterality_source}
  return {"path": npz_path, "scale": scale, "laterality": side, "summary":
          summary_rows(scans.source, scans, out, scale, extra, seen),
          "uncertain_scans": None if flags is None else int(sum(f.any() for f in flags)),
          "low_support": int(geom.low_support(out["supported"]).sum()),
          "training": overlap_counts(*seen)}


def unpacked(packed, width: int):
  """A kept fluid mask [H, W] (uint8 0/1) from its np.packbits form (None stays None)."""
  return None if packed is None else np.unpackbits(packed, axis=-1, count=width)


def model_label(trained) -> str:
  """The figures' model name: the workdir, and the boundary smoothing when it is on."""
  sd = float(trained.config.predict.smooth_sd_columns)
  return trained.workdir + (f" (boundaries smoothed along the B-scan, sd {sd:g} columns)"
                            if sd else "")


def draw_figures(run: RunOutputs, scans, out: Dict, drawn, flags, model: str,
                 scale: Dict, flag: Optional[ColumnFlag] = None, seen=None) -> None:
  """Overlay and thickness figures of the scans `drawn` ({index: a line the titles add}:
  figure_scans), titled with the scale used and, where `seen` (TrainingScans.flags) says so,
  that the model learned the scan; `flags`: per scan the uncertain columns or None, and `flag`
  what flags them (column_flag; the legend's words)."""
  uncertain_rule = None if flag is None else flag.legend
  for i, why in drawn.items():
    name = scans.names[i]
    label = name + ("" if seen is None else report.training_title(seen[0][i], seen[1][i]))
    true_b = true_t = true_fluid = None
    if scans.masks is not None and (scans.masks[i] != IGNORE).any():     # an annotated scan
      true_b = geom.boundaries_from_labels(scans.masks[i])
      true_t = geom.thickness_um(true_b, scale["row_um"])
      true_fluid = None if scans.fluid is None else scans.fluid[i]
    # Columns without support (out of anatomical order, or a boundary not found) are shaded,
    # not drawn, and have no thickness in the CSV.
    unsupported = ~out["supported"][i]
    overlay, thickness = run.claim(name, SCAN_SUFFIXES)
    where = inputs.scale_text(scale)
    plots.boundary_overlay(overlay, scans.images[i], out["boundaries"][i], true_b,
                           title=f"{label} ({where}){why}", model=model,
                           unsupported=unsupported, fluid=unpacked(out["fluid_kept"].get(i),
                                                                   scans.images.shape[-1]),
                           true_fluid=true_fluid,
                           uncertain=None if flags is None else flags[i],
                           pixel_um=(scale["row_um"], scale["col_um"]),
                           uncertain_rule=uncertain_rule)
    plots.thickness_profile(thickness, out["thickness_um"][i], true_t,
                            title=f"{label}: layer thickness ({where}){why}", model=model,
                            unsupported=unsupported, uncertain=None if flags is None else flags[i],
                            uncertain_rule=uncertain_rule, col_um=scale["col_um"])
    run.wrote(overlay, thickness)


def prefetched(items: Iterable) -> Iterator:
  """The items of `items`, the next one produced in a background thread (reading and
  decoding the next file) while the caller works on the current one."""
  end = object()
  with ThreadPoolExecutor(max_workers=1) as pool:
    iterator = iter(items)
    future = pool.submit(next, iterator, end)
    while True:
      item = future.result()
      if item is end:
        return
      future = pool.submit(next, iterator, end)
      yield item


def print_file_result(path: str, num_scans: int, done: Dict, flag: Optional[ColumnFlag]) -> None:
  """The console lines of one predicted file: where it went, at what scale, how many scans
  have uncertain columns (`flag`: column_flag), and warnings about scans with little support
  or that the model trained on."""
  scans = report.count(num_scans, "scan")
  print(f"predicted {scans} of {path} ({inputs.scale_text(done['scale'])}) -> {done['path']}")
  if done["uncertain_scans"]:
    print(f"uncertain: {done['uncertain_scans']} of {scans} of {path} "
          f"{'has' if done['uncertain_scans'] == 1 else 'have'} columns where {flag.console} "
          "(CSV `uncertain`; orange in the figures drawn)")
  if done["low_support"]:
    print(report.low_support_warning(done["low_support"], f"{scans} of {path}",
                                     "every layer's thickness", " (the rest shaded 'no support')"))
  if report.training_overlap(done["training"]):
    print(f"warning: {report.training_overlap_text(done['training'], num_scans, f' of {path}')}"
          f": {report.NOT_HELD_OUT['predict']}")


def predict_files(outputs: RunOutputs, readable, stem_of, trained, figures, fovea_mm,
                  batch_size: int, single: bool = False, pixel_um_option=None):
  """write_file_outputs for each (path, ScanSet) of `readable` (the next file read while one
  is predicted); returns manifest.json's facts of them: scans, files_predicted, scales ({file:
  scale used}), scans_with_low_support, scans_in_training, scans_from_training_volumes, for
  volumes lateralities ({file: laterality used}), with a column flag (column_flag)
  scans_with_uncertain_columns, its threshold (uncertain_um: an ensemble's spread, or
  uncertain_position_sd_um: the position sd, column_flag) and uncertain_by (the uncertainty's
  key in the prediction files). In a folder run a file whose prediction
  fails for any reason becomes a failed row of errors.csv and the run goes on; a single input
  file fails the run."""
  from octseg_jax.serving.inference import overlap_counts
  num_scans = num_files = 0
  uncertain_scans, summary, scales, sides, low = None, [], {}, {}, 0
  seen = overlap_counts([], [])
  for path, scans in prefetched(readable):
    claimed = set(outputs.claimed)
    try:
      done = write_file_outputs(outputs, stem_of[path], scans, trained, figures, fovea_mm,
                                batch_size, pixel_um_option)
    except Exception as e:  # noqa: BLE001  (any per-file failure; KeyboardInterrupt passes)
      if single:
        raise
      outputs.discard(outputs.claimed - claimed)     # what the failed file had written
      inputs.report_failure(outputs.failed, path, e)
      continue
    summary += done["summary"]
    scales[path] = inputs.scale_record(done["scale"])
    if done["laterality"] is not None:
      sides[path] = done["laterality"]
    if done["uncertain_scans"] is not None:
      uncertain_scans = (uncertain_scans or 0) + done["uncertain_scans"]
    num_scans, num_files = num_scans + len(scans), num_files + 1
    low += done["low_support"]
    seen = {k: v + done["training"][k] for k, v in seen.items()}
    print_file_result(path, len(scans), done, column_flag(trained))
    if scans.volume is None and (hint := volumes.volume_hint(path)):
      print(hint)
  if summary:
    (path,) = outputs.claim("summary", (".csv",))
    write_csv(path, summary_header(trained), summary)
    outputs.wrote(path)
  facts = {"scans": num_scans, "files_predicted": num_files, "scales": scales,
           "scans_with_low_support": low, **seen}
  if uncertain_scans is not None:
    flag = column_flag(trained)
    facts["scans_with_uncertain_columns"] = uncertain_scans
    facts[flag.config_field] = flag.threshold_um
    facts["uncertain_by"] = flag.key
  if sides:
    facts["lateralities"] = sides
  return facts


def run(workdir: str, input_path: str, output: str, figures: str = plots.DEFAULT_FIGURES,
        volume: bool = False, laterality: str = None, fovea: str = None, overrides=None,
        pixel_um: str = None) -> Dict:
  """Predicts every readable scan file that `input_path` names into the folder `output`.

  figures: which scans of each file get an overlay and a thickness figure ('none', 'first',
    'fovea': a volume's B-scan nearest its fovea, the first scan of other files, 'all');
    the prediction file and the thickness CSV are always written.
  volume, laterality, fovea: volumes (scanner files, .mat, .npz with scale_mm or with `volume`)
    also get the en-face maps, ETDRS table and .eye (octseg_jax.outputs.volume_report); laterality
    applies where the file has none, fovea (x_mm,y_mm) replaces the automatic one.
  overrides: checked inference settings (inference_overrides).
  pixel_um: --pixel_um=ROW[,COL], the pixel size of inputs without their own (units only).
  Raises an InputError (after writing the outputs of the readable files, errors.csv and
  manifest.json) when any file of a folder could not be read or predicted; a single bad file
  fails at once.
  """
  from octseg_jax.outputs import volume_report
  from octseg_jax.serving.inference import load_trained, model_record, stored_config
  figure_scans(figures, 0)                      # an unknown value fails before any work
  fovea_mm = volume_report.parse_fovea(fovea)
  pixel_um_option = inputs.parse_pixel_um(pixel_um)
  volume_options = {"force": volume, "laterality": laterality}
  stored = stored_config(workdir, overrides)
  max_side = int(stored.data.max_image_side)
  files, skipped = inputs.list_inputs(input_path)
  folder = check_output_folder(output)
  outputs = RunOutputs(folder, files, "predict", [input_path])
  stems = unique_stems(files)
  for stem in stems:                                   # a volume's outputs share its stem
    outputs.refuse_replacing(stem, FILE_SUFFIXES + VOLUME_SUFFIXES)
  outputs.refuse_replacing("summary", (".csv",))
  single = inputs.is_one_input(input_path)
  first = inputs.load_file(files[0], max_side=max_side, volume_options=volume_options) \
      if single else None                                         # fail before loading the model
  if first is not None:                           # a scale the file refuses: before any output
    inputs.resolve_scale(first, pixel_um_option, float(stored.data.pixel_um))
    volume_report.check_volume_options(first.volume, files[0], fovea_mm, laterality, volume)
  trained = load_trained(workdir, overrides)
  print_flag_note(trained, overrides)
  outputs.start()
  for path in skipped:
    outputs.skipped(path, "not a scan file (no scan extension)")
  stem_of = dict(zip(files, stems))
  readable = [(files[0], first)] if single else inputs.read_files(
      files, outputs.failed, max_side, volume_options=volume_options)
  batch_size = network_batch_size(trained, overrides)
  start = time.perf_counter()
  facts = predict_files(outputs, readable, stem_of, trained, figures, fovea_mm, batch_size,
                        single, pixel_um_option)
  seconds = time.perf_counter() - start
  summary = {"input": input_path, "workdir": workdir, "files": len(files),
             **model_record(trained), "batch_size": batch_size,
             "smooth_sd_columns": float(trained.config.predict.smooth_sd_columns), **facts,
             "seconds": round(seconds, 3),
             "scans_per_second": round(facts["scans"] / seconds, 3) if seconds > 0 else None}
  outputs.finish(summary)
  report_run(outputs, input_path, summary, len(skipped), dict(volume_options, fovea=fovea_mm))
  return summary


VOLUME_FLAGS = {"force": "--volume", "laterality": "--laterality", "fovea": "--fovea"}


def report_run(outputs: RunOutputs, input_path: str, summary: Dict, num_skipped: int,
               volume_options: Dict) -> None:
  """predict's one-line summary, with a note when volume options were given (volume_options,
  keyed as VOLUME_FLAGS) but no file was read as a volume; an InputError when any file failed
  (its outputs are written)."""
  seconds, num_scans = summary["seconds"], summary["scans"]
  folder = outputs.folder
  rate = f"{num_scans / seconds:.2f} scans/s" if seconds > 0 and num_scans else "no scans"
  print(f"predict: {report.count(num_scans, 'scan')} of "
        f"{report.count(summary['files_predicted'], 'file')} in "
        f"{seconds:.1f} s ({rate} after loading the model) -> {folder}; "
        f"{outputs.num_failed} failed, {num_skipped} skipped"
        + (f" (listed in {folder}/errors.csv)" if outputs.problems else ""))
  given = [flag for key, flag in VOLUME_FLAGS.items() if volume_options.get(key)]
  if given and "lateralities" not in summary:          # lateralities: one per volume read
    print(f"note: {', '.join(given)} only apply to volumes, and no file of {input_path} was "
          "read as one")
  outputs.refuse_failures(input_path, "predicted")
