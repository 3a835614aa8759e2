"""What predict writes for an input volume NAME, next to its per-B-scan outputs:

* NAME_thickness_maps.png: one en-face panel per layer and of the whole retina (ILM to BM), um,
  with the ETDRS grid and the fovea drawn on the total-thickness map (a '*' after a sector's
  thickness where under geometry LOW_SUPPORT of it is in the model's own layer order);
* NAME_etdrs.csv: rows C0, S1, N1, I1, T1, S2, N2, I2, T2; mean thickness per layer and
  `total` in um over the measured part of the sector (empty when less than
  enface.MIN_MEASURED of it is measured), `coverage`, the share of the sector's area within
  reach of a B-scan, `measured`, the share with a known total thickness
  (octseg_jax.geometry.enface), and `supported`, the share of the measured part where the
  model's own labels were in anatomical order (the columns summary.csv averages; elsewhere the
  thickness is the order fix's); `laterality` and `laterality_source` (file, --laterality, or
  assumed: the sector names N and T depend on it); with the fluid head `fluid_mm3` and a last
  row `total` (6 mm disc);
* NAME.eye: an eyepy EyeVolume with the scan and the predicted boundaries as layer annotations
  under the Heidelberg names (data.volumes.HEYEX_NAMES), for eyepy and eyelab, with a scanner
  file's own fundus image and B-scan placement (Volume.placement);
* extra keys for the one NAME.npz (returned, written by predict): thickness_maps_um [8, G, G]
  (7 layers, then total), map_x_mm [G], map_y_mm [G] (row 0 superior), map_covered [G, G],
  fovea_mm [2], fovea_source (FOVEA_FOUND, FOVEA_GIVEN or FOVEA_NOT_FOUND), etdrs_um [9, 8],
  etdrs_coverage [9], etdrs_measured [9], etdrs_supported [9], etdrs_sectors,
  bscan_positions_mm [N], scale_mm [3], laterality, laterality_source (data.volumes.Volume).
"""

import os
import warnings
from typing import Optional, Sequence

import numpy as np

from octseg_jax.geometry import boundaries as geom
from octseg_jax.geometry import enface
from octseg_jax.anatomy import BOUNDARY_NAMES, LAYER_NAMES
from octseg_jax.data.volumes import HEYEX_NAMES, LATERALITY_ASSUMED, Volume
from octseg_jax.errors import fail
from octseg_jax.outputs.atomic import atomic_path, save_figure, write_csv

MAP_NAMES = tuple(LAYER_NAMES[1:]) + ("total",)
# where a volume's fovea came from (the maps' title, the figures' B-scan, fovea_source)
FOVEA_FOUND, FOVEA_GIVEN = "found", "given with --fovea"
FOVEA_NOT_FOUND = "NOT FOUND: the scan centre is used"


def parse_fovea(text: Optional[str]):
  """--fovea=x_mm,y_mm -> (x, y) or None."""
  if not text:
    return None
  try:
    x, y = (float(v) for v in text.split(","))
  except ValueError:
    raise fail("--fovea", f"expected x_mm,y_mm (two numbers), got {text!r}") from None
  if not (np.isfinite(x) and np.isfinite(y)):
    raise fail("--fovea", f"expected finite numbers, got {text!r}")
  return x, y


def bscan_spacing_text(volume: Volume) -> str:
  """How far apart the file's B-scans are: the volume's spacing (the gaps within 1% or 1 um of
  it: scanner files give positions to the um), or the range of their gaps where they are a
  selection of its B-scans (the annotated B-scans of a Duke subject file)."""
  spacing_um = volume.scale_mm[0] * 1e3
  gaps_um = np.diff(np.sort(np.asarray(volume.positions_mm, float))) * 1e3
  if gaps_um.size == 0 or np.allclose(gaps_um, spacing_um, rtol=0.01, atol=1.0):
    return f"{spacing_um:.4g} um between B-scans"
  return (f"B-scans {gaps_um.min():.4g}-{gaps_um.max():.4g} um apart (a selection of a "
          f"volume's, {spacing_um:.4g} um between B-scans)")


def check_volume_options(volume: Optional[Volume], path: str, fovea_mm, laterality, force: bool):
  """For a single input file: refuses --fovea, --laterality or --volume where the file is not
  read as a volume (they would do nothing), and a --fovea far from the scan (check_fovea)."""
  if volume is not None:
    check_fovea(volume, fovea_mm, path)
    return
  given = [name for name, value in (("--volume", force), ("--fovea", fovea_mm),
                                    ("--laterality", laterality)) if value]
  if given:
    npz = path.lower().endswith(".npz") and not force
    raise fail(given[0], f"{path} is not read as a volume (scanner files, HEYEX XML folders, .mat, "
               ".npz with scale_mm or with --volume), so it would do nothing"
               + ("; add --volume to read this .npz as one" if npz else ""))


def check_fovea(volume: Volume, fovea_mm: Optional[Sequence[float]], path: str = "") -> None:
  """Refuses a --fovea whose ETDRS grid (outer radius 3 mm) reaches no point the en-face maps
  cover (enface.distance_to_scan_mm with their reach): no sector could be measured; None
  passes. A fovea nearer than that may still leave every sector below MIN_MEASURED, which the
  ETDRS table then shows as empty."""
  if fovea_mm is None:
    return
  far = enface.ETDRS_RADII_MM[-1]
  geometry = (volume.positions_mm, volume.images.shape[2], volume.scale_mm[2], enface.REACH_MM)
  d = enface.distance_to_scan_mm(fovea_mm, *geometry)
  if d >= far:
    x_extent, y_lo, y_hi = enface.scan_extent_mm(*geometry)
    where = f" for {path}" if path else ""
    raise fail("--fovea", f"({fovea_mm[0]:g}, {fovea_mm[1]:g}) mm is {d:.2f} mm from the area "
               f"the maps cover{where} (x 0 to {x_extent:.2f}, y {y_lo:.2f} to {y_hi:.2f} mm): "
               f"no ETDRS sector (radius {far:g} mm) would be measured")


def thickness_values(boundaries: np.ndarray, row_um: float):
  """Boundaries [N, 8, W] -> (values [N, 8, W]: 7 layers then ILM-BM total, inner [N, W]:
  ILM to OPL/ONL, the inner retina that thins in the foveal pit), all in um."""
  ilm, inner_end, bm = (BOUNDARY_NAMES.index(n) for n in ("ILM", "OPL/ONL", "BM"))
  total = (boundaries[:, bm] - boundaries[:, ilm]) * row_um
  inner = (boundaries[:, inner_end] - boundaries[:, ilm]) * row_um
  return np.concatenate([geom.thickness_um(boundaries, row_um), total[:, None]], axis=1), inner


def fluid_height_um(fluid: np.ndarray, row_um: float) -> np.ndarray:
  """Fluid masks [N, H, W] (0/1) -> fluid height per A-scan [N, W] in um (fluid rows x row
  size: the en-face fluid map's values)."""
  return np.asarray(fluid, np.float64).sum(axis=-2) * row_um


def analyse(volume: Volume, boundaries: np.ndarray, fovea_mm: Optional[Sequence[float]] = None,
            fluid_um: Optional[np.ndarray] = None, supported: Optional[np.ndarray] = None):
  """enface.analyse_volume for a Volume and boundaries [N, 8, W] in rows; with fluid heights
  [N, W] (um) also the en-face fluid map (`fluid_map_um` [G, G]), its ETDRS means
  (`etdrs_fluid_um` [9]) and volumes (`etdrs_fluid_mm3` [9], `fluid_mm3_total` over the
  6 mm disc). Fluid counts as measured only where the retina was found (ILM and BM: the
  total-thickness map is known), so its map is blank where that one is, a sector's volume is
  NaN where too little of it is measured (enface.MIN_MEASURED), and the disc's total is NaN
  unless every sector has a volume. With supported [N, W] (bool: predict's columns whose labels
  were in anatomical order) also `etdrs_supported` [9], the supported share of each sector's
  measured part (NaN where the sector has no thickness values)."""
  values, inner = thickness_values(boundaries, volume.scale_mm[1] * 1000.0)
  if fluid_um is not None:
    fluid = geom.fluid_where_measured(fluid_um, boundaries)
    values = np.concatenate([values, fluid[:, None]], axis=1)
  if supported is not None:
    share = np.where(np.isfinite(values[:, MAP_NAMES.index("total")]), supported, np.nan)
    values = np.concatenate([values, share[:, None]], axis=1)
  result = enface.analyse_volume(values, inner, volume.positions_mm, volume.scale_mm[2],
                                 volume.laterality, fovea_mm,
                                 measured_channel=MAP_NAMES.index("total"))
  if supported is not None:
    result["etdrs_supported"] = result["etdrs_um"][:, -1]
    result["etdrs_um"], result["maps"] = result["etdrs_um"][:, :-1], result["maps"][:-1]
  if fluid_um is not None:
    result["fluid_map_um"], result["maps"] = result["maps"][-1], result["maps"][:-1]
    result["etdrs_fluid_um"] = result["etdrs_um"][:, -1]
    result["etdrs_um"] = result["etdrs_um"][:, :-1]
    result["etdrs_fluid_mm3"] = enface.sector_volumes_mm3(result["etdrs_fluid_um"])
    result["fluid_mm3_total"] = float(np.sum(result["etdrs_fluid_mm3"]))   # NaN if one is
  return result


def write(output: str, stem: str, volume: Volume, boundaries: np.ndarray,
          fovea_mm: Optional[Sequence[float]] = None, fluid_um: Optional[np.ndarray] = None,
          model: str = "", supported: Optional[np.ndarray] = None, note: str = "") -> dict:
  """Writes NAME_thickness_maps.png, NAME_etdrs.csv and NAME.eye; returns the NAME.npz keys.
  fluid_um: fluid height per B-scan and A-scan [N, W] of a model with the fluid head; model:
  the workdir named in the maps title; supported: predict's supported columns [N, W]; note:
  a line under the title's first (report.training_volume_title)."""
  result = analyse(volume, boundaries, fovea_mm, fluid_um, supported)
  write_etdrs_csv(os.path.join(output, f"{stem}_etdrs.csv"), result,
                  (volume.laterality, volume.laterality_source))
  source = FOVEA_GIVEN if fovea_mm is not None else (
      FOVEA_FOUND if result["fovea_found"] else FOVEA_NOT_FOUND)
  plot_maps(os.path.join(output, f"{stem}_thickness_maps.png"), result, volume,
            stem + (f" (model: {model})" if model else "") + f"; fovea {source}"
            + support_text(result, short=True) + (f"\n{note}" if note else ""))
  if len(volume) >= 2:
    write_eye(os.path.join(output, f"{stem}.eye"), volume, boundaries)
  else:   # eyepy places B-scans on a fundus by an affine fit, which needs two of them
    print(f"{stem}: one B-scan, so no {stem}.eye (eyepy needs at least two)")
  measured = result["etdrs_measured"]
  side = ("" if volume.laterality_source == LATERALITY_ASSUMED      # its note below says it
          else f"{laterality_text(volume)}, ")
  print(f"{stem}: {side}fovea ({result['fovea_mm'][0]:.2f}, "
        f"{result['fovea_mm'][1]:.2f}) mm ({source}), ETDRS sectors measured: "
        f"{int((measured > 0.999).sum())}/9 fully, {int((measured >= enface.MIN_MEASURED).sum())}"
        f"/9 at least {enface.MIN_MEASURED:.0%} (only those have thickness values)"
        + support_text(result) + "".join(f"; {n}" for n in volume.notes))
  return {**fluid_keys(result), "thickness_maps_um": result["maps"].astype(np.float32),
          "map_x_mm": result["map_x_mm"], "map_y_mm": result["map_y_mm"],
          "map_covered": result["map_covered"], "fovea_mm": result["fovea_mm"],
          "fovea_source": np.array(source),
          "etdrs_um": result["etdrs_um"], "etdrs_coverage": result["etdrs_coverage"],
          "etdrs_measured": result["etdrs_measured"],
          **({} if supported is None else {"etdrs_supported": result["etdrs_supported"]}),
          "etdrs_sectors": np.array(enface.ETDRS_SECTORS), "map_names": np.array(MAP_NAMES),
          "bscan_positions_mm": np.asarray(volume.positions_mm, np.float64),
          "scale_mm": np.asarray(volume.scale_mm, np.float64),
          "laterality": np.array(volume.laterality),
          "laterality_source": np.array(volume.laterality_source)}


def low_support_sectors(result: dict) -> tuple:
  """The ETDRS sectors with a total thickness that stands on less than geometry.LOW_SUPPORT of
  columns in the model's own layer order (etdrs_supported; none without it)."""
  share = result.get("etdrs_supported")
  if share is None:
    return ()
  total = result["etdrs_um"][:, MAP_NAMES.index("total")]
  return tuple(name for name, s, t in zip(enface.ETDRS_SECTORS, share, total)
               if np.isfinite(s) and np.isfinite(t) and s < geom.LOW_SUPPORT)


def support_text(result: dict, short: bool = False) -> str:
  """'; supported in A-B% of a sector's measured part' (etdrs_supported: the model's own layer
  order), with a warning when a sector falls below geometry.LOW_SUPPORT; '' without it. short:
  the maps title's wording."""
  share = result.get("etdrs_supported")
  if share is None or not np.isfinite(share).any():
    return ""
  low, high = np.nanmin(share), np.nanmax(share)
  if short:
    return (f"; model's own layer order in {low:.0%}-{high:.0%} of a sector"
            + (" (low: thickness mostly the order fix's)" if low < geom.LOW_SUPPORT else ""))
  text = (f"; supported (the model's own layer order) in {low:.0%}-{high:.0%} of a sector's "
          "measured part")
  if low < geom.LOW_SUPPORT:
    text += (f" (below {geom.LOW_SUPPORT:.0%}, the ETDRS table's supported column: the "
             "thickness there is mostly the order fix's, not the model's; read with care)")
  return text


def laterality_text(volume: Volume, why: str = "") -> str:
  """'OD (laterality from the file)', 'OS (laterality from --laterality)', or 'OD ASSUMED
  (why)' where neither gave one."""
  if volume.laterality_source != LATERALITY_ASSUMED:
    source = "the file" if volume.laterality_source == "file" else volume.laterality_source
    return f"{volume.laterality} (laterality from {source})"
  return f"{volume.laterality} ASSUMED" + (f" ({why})" if why else "")


def fluid_keys(result: dict) -> dict:
  """The NAME.npz keys of the fluid map and volumes ({} without the fluid head)."""
  if "fluid_map_um" not in result:
    return {}
  return {"fluid_map_um": result["fluid_map_um"].astype(np.float32),
          "etdrs_fluid_mm3": result["etdrs_fluid_mm3"],
          "fluid_mm3_total": np.float64(result["fluid_mm3_total"])}


def write_etdrs_csv(path: str, result: dict, laterality: Sequence[str]) -> None:
  """One row per sector: mean thickness per map (um), coverage, measured, supported (when
  predict gave it), the laterality the sectors are named for and where it came from
  ((laterality, source): nasal and temporal depend on it) and, with the fluid head, fluid_mm3;
  then a row `total` (the 6 mm disc) holding the fluid volume alone."""
  fluid, supported = result.get("etdrs_fluid_mm3"), result.get("etdrs_supported")
  rows = []
  for i, (name, means, cov, meas) in enumerate(zip(
      enface.ETDRS_SECTORS, result["etdrs_um"], result["etdrs_coverage"],
      result["etdrs_measured"])):
    rows.append([name] + ["" if not np.isfinite(v) else f"{v:.1f}" for v in means]
                + [f"{cov:.3f}", f"{meas:.3f}"] + _share(supported, i) + [*laterality]
                + ([] if fluid is None else [_mm3(fluid[i])]))
  header = ["sector"] + [f"{n}_um" if n != "total" else "total_um" for n in MAP_NAMES]
  header += ["coverage", "measured"] + (["supported"] if supported is not None else [])
  header += ["laterality", "laterality_source"]
  header += [] if fluid is None else ["fluid_mm3"]
  if fluid is not None:
    rows.append(["total"] + [""] * (len(MAP_NAMES) + 2) + _share(supported, None)
                + [*laterality]
                + [_mm3(result["fluid_mm3_total"])])
  write_csv(path, header, rows)


def _share(supported, i) -> list:
  """The `supported` cell of sector i ([] without the column; empty on the total row)."""
  if supported is None:
    return []
  return ["" if i is None or not np.isfinite(supported[i]) else f"{supported[i]:.3f}"]


def _mm3(v) -> str:
  return "" if not np.isfinite(v) else f"{v:.4f}"


def write_eye(path: str, volume: Volume, boundaries: np.ndarray) -> None:
  """The scan and boundaries [N, 8, W] (rows) as an eyepy .eye file (B-scan 0 bottom-most),
  with a scanner file's fundus image and B-scan placement on it (Volume.placement) where it
  has them, else eyepy's default fundus projection and B-scans placed by positions_mm."""
  import eyepy
  from eyepy.core.eyemeta import EyeBscanMeta, EyeVolumeMeta
  n, _, w = volume.images.shape
  dz, dy, dx = volume.scale_mm
  top = float(np.max(volume.positions_mm))
  placement = volume.placement or {}
  bscan_meta = placement.get("bscan_meta") or [
      EyeBscanMeta(start_pos=(0.0, top - p), end_pos=((w - 1) * dx, top - p), pos_unit="mm")
      for p in volume.positions_mm]
  meta = EyeVolumeMeta(scale_z=dz, scale_x=dx, scale_y=dy, scale_unit="mm",
                       bscan_meta=bscan_meta, laterality=volume.laterality)
  ev = eyepy.EyeVolume(data=volume.images, meta=meta, localizer=placement.get("localizer"),
                       transformation=placement.get("transform"))
  for k, name in enumerate(HEYEX_NAMES):
    ev.add_layer_annotation(np.asarray(boundaries[:, k, :], np.float64), name=name)
  with atomic_path(path) as tmp:
    ev.save(tmp)


def draw_etdrs(ax, fovea_mm, laterality: str, values=None, colour: str = "k",
               digits: int = 0, starred=()) -> None:
  """ETDRS circles and diagonals (in map mm coordinates, lines in `colour`; any colour but
  black is drawn a little wider with a dark edge, to stay visible over blank map areas) with
  sector labels and, given `values` [9] (ETDRS_SECTORS order: mean thickness in um, or fluid
  volume in mm3 with `digits` 3), each sector's value under its label, with a '*' in the
  sectors named in `starred`."""
  from matplotlib import patheffects
  edge = [] if colour == "k" else [patheffects.Stroke(linewidth=2.4, foreground="0.2"),
                                   patheffects.Normal()]
  lines = {"color": colour, "lw": 1.0 if edge else 0.7, "path_effects": edge}
  fx, fy = fovea_mm
  angles = np.linspace(0, 2 * np.pi, 200)
  for r in enface.ETDRS_RADII_MM:
    ax.plot(fx + r * np.cos(angles), fy + r * np.sin(angles), **lines)
  for a in np.deg2rad([45, 135, 225, 315]):
    r0, r1 = enface.ETDRS_RADII_MM[0], enface.ETDRS_RADII_MM[-1]
    ax.plot([fx + r0 * np.cos(a), fx + r1 * np.cos(a)],
            [fy + r0 * np.sin(a), fy + r1 * np.sin(a)], **lines)
  nasal = 1 if laterality == "OD" else -1
  value = dict(zip(enface.ETDRS_SECTORS, values)) if values is not None else {}
  centres = [("C0", (0, 0), 0.0)] + [
      (f"{label}{ring}", unit, r) for ring, r in ((1, 1.0), (2, 2.25))
      for label, unit in (("S", (0, 1)), ("I", (0, -1)), ("N", (nasal, 0)), ("T", (-nasal, 0)))]
  for name, (ux, uy), r in centres:
    v = value.get(name)
    star = "*" if name in starred else ""
    text = name if v is None else (f"{name}\n{v:.{digits}f}{star}" if np.isfinite(v)
                                   else f"{name}\n-")
    ax.text(fx + r * ux, fy + r * uy, text, ha="center", va="center", fontsize=7,
            clip_on=True,   # a small scan's map ends inside the grid: no labels beyond it
            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))


MIN_COLOUR_SPAN_UM = 20.0   # about 5 pixel rows at 3.9 um: thinner spans would colour noise


def robust_limits(m: np.ndarray, min_span: float = MIN_COLOUR_SPAN_UM):
  """Colour limits of a map: its 2nd and 98th percentiles over known points, so that single
  outlier points do not wash out the rest (colour bars say values beyond them are clipped),
  widened about their middle to at least `min_span` (not below 0), so that the few um of
  noise of a thin, even layer (ISE, OS-RPE) do not fill the whole colour map."""
  known = np.asarray(m, np.float64)[np.isfinite(m)]
  if not known.size:
    return 0.0, min_span
  lo, hi = np.percentile(known, [2, 98])
  if hi - lo < min_span:
    lo = max(0.0, (lo + hi - min_span) / 2)
    hi = lo + min_span
  return float(lo), float(hi)


def draw_map(fig, ax, label: str, m: np.ndarray, extent, cmap: str, limits,
             laterality: str) -> None:
  """One en-face panel in mm with its colour bar; a map with no known point says so instead
  of drawing a colour bar for values that do not exist. Nasal is to the right for OD."""
  im = ax.imshow(np.ma.masked_invalid(m), extent=extent, cmap=cmap, origin="upper",
                 interpolation="nearest", vmin=limits[0], vmax=limits[1])
  ax.set_title(label, fontsize=10)
  ax.set_xlabel("x (mm); nasal " + ("right" if laterality == "OD" else "left"), fontsize=8)
  ax.set_ylabel("y (mm, superior up)", fontsize=8)
  ax.tick_params(labelsize=8)
  if np.isfinite(m).any():      # arrows only at the ends that values lie beyond (clipped)
    low, high = np.nanmin(m) < limits[0], np.nanmax(m) > limits[1]
    extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (low, high), "neither")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, extend=extend).ax.tick_params(labelsize=8)
  else:
    ax.text(0.5, 0.08, "nothing measured", transform=ax.transAxes, ha="center", va="bottom",
            fontsize=10)      # low: the ETDRS labels sit in the middle of the total map


def plot_maps(path: str, result: dict, volume: Volume, title: str) -> None:
  """One panel per map (7 layers, total, fluid height with the fluid head), colour bars in um,
  the ETDRS grid drawn on the total map (with each sector's mean) and on the fluid map."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  x, y = result["map_x_mm"], result["map_y_mm"]
  extent = (x[0], x[-1], y[-1], y[0])
  panels = [(f"{name} (um)" if name != "total" else "total ILM-BM (um)", m, "viridis",
             robust_limits(m)) for name, m in zip(MAP_NAMES, result["maps"])]
  if "fluid_map_um" in result:
    total_mm3 = result["fluid_mm3_total"]
    panels.append(("fluid height (um); " + (f"{total_mm3:.3f} mm3 in the 6 mm disc"
                                            if np.isfinite(total_mm3) else
                                            "6 mm disc not measured in full: no total"),
                   result["fluid_map_um"], "cividis",     # sparse: 0 to its maximum
                   (0.0, max(float(np.nanmax(result["fluid_map_um"], initial=0.0)), 1.0))))
  rows = 2 if len(panels) <= 8 else 3
  fig, axes = plt.subplots(rows, 4 if rows == 2 else 3, layout="constrained",
                           figsize=(13, (3.3 if rows == 2 else 4.2) * rows + 0.4))  # near square
  for ax in axes.ravel()[len(panels):]:
    ax.set_visible(False)
  total = MAP_NAMES.index("total")
  starred = low_support_sectors(result)
  for ax, (label, m, cmap, (vmin, vmax)) in zip(axes.ravel(), panels):
    name = label.split(" ")[0]
    draw_map(fig, ax, label, m, extent, cmap, (vmin, vmax), volume.laterality)
    if name in ("total", "fluid"):     # fluid: each sector's volume, as NAME_etdrs.csv
      draw_etdrs(ax, result["fovea_mm"], volume.laterality,
                 result["etdrs_um"][:, total] if name == "total" else result["etdrs_fluid_mm3"],
                 "k" if name == "total" else "white",     # white on cividis' dark low end
                 0 if name == "total" else 3, starred if name == "total" else ())
      ax.set_xlim(x[0], x[-1])
      ax.set_ylim(y[-1], y[0])
  side = laterality_text(volume, "the file has none: nasal and temporal may be swapped")
  fig.suptitle(f"{title}\n{side}, {len(volume)} B-scans, scale "     # lines no wider than the maps
               f"{volume.scale_mm[1] * 1e3:.4g} um per row, {volume.scale_mm[2] * 1e3:.4g} um per "
               f"column, {bscan_spacing_text(volume)} "
               f"({volume.scale_source})\nblank = no thickness measured, or farther than "
               f"{enface.REACH_MM} mm from a B-scan; thickness colours clipped at the 2nd-98th "
               f"percentile (at least {MIN_COLOUR_SPAN_UM:.0f} um apart)\nETDRS sectors: mean "
               f"total thickness (um)" + ("; fluid map: fluid volume (mm3)"
                                          if "fluid_map_um" in result else "")
               + f", '-' = less than {enface.MIN_MEASURED:.0%} of the sector measured"
               + (f"\n'*' = the model's own layer order in under {geom.LOW_SUPPORT:.0%} of the "
                  "sector's measured part (its thickness mostly the order fix's)"
                  if starred else ""), fontsize=10)
  with warnings.catch_warnings():   # tiny or empty maps: matplotlib gives up on the layout
    warnings.filterwarnings("ignore", message=".*constrained_layout not applied.*")
    save_figure(path, fig)
