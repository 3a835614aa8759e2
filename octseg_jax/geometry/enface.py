"""En-face thickness maps of a volume, the fovea and the ETDRS grid (pure numpy; the sector
masks come from eyepy's grid code).

Coordinates: en-face maps are [rows, cols] images as on a fundus photograph: columns run with
the B-scan columns (x, mm, to the right), rows run from superior (row 0) to inferior, so a map
row at y mm (increasing superior) sits at row (y_top - y) / step. B-scans lie along rows.

Interpolation: each B-scan's per-column values are interpolated linearly in x onto the grid
columns, then linearly between the two B-scans around each grid row. A grid point is *covered*
when it lies within REACH_MM of a B-scan (measured between B-scans) and within the B-scan's
lateral extent; beyond the first and last B-scan the nearest B-scan's value is used within
reach. Map values are kept only where covered (NaN elsewhere), so the ETDRS means of a sparse
volume average over the strips its B-scans cover and its `coverage` says how much that is.

ETDRS grid (Early Treatment Diabetic Retinopathy Study): a central disc of 1 mm diameter (C0),
an inner ring 1-3 mm (S1, N1, I1, T1) and an outer ring 3-6 mm (S2, N2, I2, T2) around the
fovea, split by the diagonals into superior, nasal, inferior and temporal sectors; nasal is
towards the optic disc: to the right on the map of a right eye (OD), to the left for OS.
"""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

REACH_MM = 0.15            # half of 0.3 mm, a little more than a 25-line Spectralis spacing
GRID_STEP_MM = 0.02
ETDRS_SECTORS = ("C0", "S1", "N1", "I1", "T1", "S2", "N2", "I2", "T2")
ETDRS_RADII_MM = (0.5, 1.5, 3.0)
# Areas of the ETDRS sectors (mm2): the disc, then a quarter of each ring.
ETDRS_AREAS_MM2 = np.array([np.pi * ETDRS_RADII_MM[0] ** 2]
                           + [np.pi * (ETDRS_RADII_MM[1] ** 2 - ETDRS_RADII_MM[0] ** 2) / 4] * 4
                           + [np.pi * (ETDRS_RADII_MM[2] ** 2 - ETDRS_RADII_MM[1] ** 2) / 4] * 4)
MIN_MEASURED = 0.5         # sector values are left empty below this measured share
FOVEA_SEARCH_MM = 1.5      # the fovea is searched within this radius of the scan centre
FOVEA_SMOOTH_MM = 0.1      # Gaussian sigma of the smoothing before the minimum


def grid_axes(centre_mm: Tuple[float, float], size: int, step_mm: float):
  """x_mm [size] (left to right) and y_mm [size] (row 0 = superior) of a square grid whose
  middle pixel (size odd) or middle point (size even) sits at centre_mm = (x, y)."""
  offsets = (np.arange(size) - (size - 1) / 2.0) * step_mm
  return centre_mm[0] + offsets, centre_mm[1] - offsets


def scan_extent_mm(positions_mm: np.ndarray, width: int, col_mm: float,
                   reach_mm: float = 0.0) -> Tuple[float, float, float, float]:
  """(x_hi, y_lo, y_hi), x_lo being 0: the scanned rectangle, x from the first column to
  (width - 1) col_mm, y between the first and last B-scan, widened by reach_mm in y only (as
  enface_maps reaches beyond a B-scan but not beyond its ends)."""
  return ((width - 1) * col_mm, float(np.min(positions_mm)) - reach_mm,
          float(np.max(positions_mm)) + reach_mm)


def scan_grid(positions_mm: np.ndarray, width: int, col_mm: float,
              step_mm: float = GRID_STEP_MM) -> Tuple[Tuple[float, float], int]:
  """Centre and size of the square grid that covers the whole scanned area."""
  x_extent, y_lo, y_hi = scan_extent_mm(positions_mm, width, col_mm)
  side = max(x_extent, y_hi - y_lo)
  return (x_extent / 2.0, (y_lo + y_hi) / 2.0), int(np.floor(side / step_mm)) + 1


def distance_to_scan_mm(point_mm: Tuple[float, float], positions_mm: np.ndarray, width: int,
                        col_mm: float, reach_mm: float = 0.0) -> float:
  """Distance (mm) from an en-face point (x, y) to scan_extent_mm's rectangle; 0 inside it."""
  x_extent, y_lo, y_hi = scan_extent_mm(positions_mm, width, col_mm, reach_mm)
  dx = max(0.0, -point_mm[0], point_mm[0] - x_extent)
  dy = max(0.0, y_lo - point_mm[1], point_mm[1] - y_hi)
  return float(np.hypot(dx, dy))


def enface_maps(values: np.ndarray, positions_mm: np.ndarray, col_mm: float,
                x_mm: np.ndarray, y_mm: np.ndarray, reach_mm: float = REACH_MM):
  """Interpolates per-B-scan values onto an en-face grid.

  Args:
    values: [N, C, W] per B-scan, channel and column (NaN = unknown).
    positions_mm: [N] B-scan positions (increasing superior), distinct.
    col_mm: spacing of the columns; column j lies at x = j * col_mm.
    x_mm, y_mm: grid axes [Gx], [Gy].
    reach_mm: how far from a B-scan a grid point still counts as covered.
  Returns:
    (maps [C, Gy, Gx], NaN where not covered or unknown; covered bool [Gy, Gx], the points
    within reach of a B-scan, whatever their values).
  """
  order = np.argsort(positions_mm)
  pos = np.asarray(positions_mm, np.float64)[order]
  vals = np.asarray(values, np.float64)[order]                             # [N, C, W]
  cols = np.arange(vals.shape[-1]) * col_mm
  inside_x = lateral_extent(x_mm, vals.shape[-1], col_mm)
  prof = np.stack([[np.interp(x_mm, cols, v) for v in scan] for scan in vals])  # [N, C, Gx]
  yc = np.clip(y_mm, pos[0], pos[-1])
  upper = np.clip(np.searchsorted(pos, yc, side="left"), 1, max(len(pos) - 1, 1))
  lower = upper - 1 if len(pos) > 1 else np.zeros_like(upper)
  upper = np.minimum(upper, len(pos) - 1)
  gap = pos[upper] - pos[lower]
  t = np.where(gap > 0, (yc - pos[lower]) / np.where(gap > 0, gap, 1.0), 0.0)    # [Gy]
  distance = np.minimum(np.abs(y_mm - pos[lower]), np.abs(y_mm - pos[upper]))
  a, b = prof[lower], prof[upper]                                          # [Gy, C, Gx]
  tt = t[:, None, None]
  maps = np.where(tt == 0, a, np.where(tt == 1, b, (1 - tt) * a + tt * b))
  maps = np.moveaxis(maps, 1, 0)                                           # [C, Gy, Gx]
  covered = (distance <= reach_mm + 1e-9)[:, None] & inside_x[None, :]
  return np.where(covered[None], maps, np.nan), covered


def smooth_nan(image: np.ndarray, sigma_px: float) -> np.ndarray:
  """Gaussian smoothing that ignores NaN (normalised convolution); NaN stays NaN."""
  known = np.isfinite(image)
  num = ndimage.gaussian_filter(np.where(known, image, 0.0), sigma_px, mode="constant")
  den = ndimage.gaussian_filter(known.astype(np.float64), sigma_px, mode="constant")
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(known & (den > 0), num / den, np.nan)


def lateral_extent(x_mm: np.ndarray, width: int, col_mm: float) -> np.ndarray:
  """bool [Gx]: the grid columns within the B-scans' columns 0 .. width - 1 (x = j * col_mm)."""
  return (x_mm >= -1e-9) & (x_mm <= (width - 1) * col_mm + 1e-9)


def scanned_area(positions_mm: np.ndarray, width: int, col_mm: float, x_mm: np.ndarray,
                 y_mm: np.ndarray) -> np.ndarray:
  """bool [Gy, Gx]: the grid points between the first and last B-scan and within the B-scans'
  lateral extent (gaps between sparse B-scans and columns without values included)."""
  y = (y_mm >= np.min(positions_mm) - 1e-9) & (y_mm <= np.max(positions_mm) + 1e-9)
  return y[:, None] & lateral_extent(x_mm, width, col_mm)[None, :]


def find_fovea(inner_map: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray,
               centre_mm: Tuple[float, float], inside: Optional[np.ndarray] = None,
               search_mm: float = FOVEA_SEARCH_MM,
               smooth_mm: float = FOVEA_SMOOTH_MM) -> Optional[Tuple[float, float]]:
  """(x, y) mm of the minimum of the smoothed inner-retina thickness map [Gy, Gx] within
  search_mm of centre_mm and within `inside` (bool [Gy, Gx], scanned_area; None: the whole
  grid), or None when no point with a value lies there or the minimum is not a pit: its 8
  grid neighbours must be searched and inside too. A minimum on that area's edge only says
  the retina thins towards a fovea outside it (a strip of B-scans beside the fovea), so a pit
  on the first or last B-scan or at a B-scan's end is not found either."""
  step = abs(x_mm[1] - x_mm[0]) if len(x_mm) > 1 else 1.0
  smooth = smooth_nan(inner_map, smooth_mm / step)
  area = (x_mm[None, :] - centre_mm[0]) ** 2 + (y_mm[:, None] - centre_mm[1]) ** 2 \
      <= search_mm ** 2
  if inside is not None:
    area = area & inside
  candidates = np.where(area & np.isfinite(smooth), smooth, np.inf)
  if not np.isfinite(candidates).any():
    return None
  row, col = np.unravel_index(np.argmin(candidates), candidates.shape)
  if not np.pad(area, 1)[row:row + 3, col:col + 3].all():
    return None
  return float(x_mm[col]), float(y_mm[row])


def etdrs_masks(laterality: str, step_mm: float = GRID_STEP_MM) -> Dict[str, np.ndarray]:
  """ETDRS sector masks [M, M] (M odd, centre pixel = fovea, 0/1 floats) by sector name, from
  eyepy.core.grids.grid. eyepy orders each ring's sectors superior, temporal, inferior, nasal
  for both eyes (it mirrors the masks for OS)."""
  from eyepy.core import grids  # eyepy only for the grid
  if laterality not in ("OD", "OS"):
    raise ValueError(f"laterality must be OD or OS, got {laterality!r}")
  half = int(np.ceil(ETDRS_RADII_MM[-1] / step_mm)) + 1
  size = 2 * half + 1
  masks = list(grids.grid((size, size), ETDRS_RADII_MM, laterality, n_sectors=(1, 4, 4),
                          rotation=(0, 45, 45), radii_scale=step_mm).values())
  order = ("C0", "S1", "T1", "I1", "N1", "S2", "T2", "I2", "N2")
  return {name: np.asarray(m, np.float64) for name, m in zip(order, masks)}


def etdrs_table(maps: np.ndarray, covered: np.ndarray, masks: Dict[str, np.ndarray],
                measured_channel: int = -1, min_measured: float = MIN_MEASURED):
  """Per sector (ETDRS_SECTORS order) the mean of each map over the covered part where it is
  known, the covered share of the sector area (within reach of a B-scan) and the measured
  share (covered and with a known value of map `measured_channel`, e.g. the total thickness).

  Args:
    maps: [C, M, M] on the fovea-centred grid of `masks`. covered: bool [M, M].
  Returns:
    (means [9, C], NaN where the share of a sector with a known value of that map is below
    min_measured, coverage [9], measured [9]).
  """
  means = np.full((len(ETDRS_SECTORS), maps.shape[0]), np.nan)
  coverage = np.zeros(len(ETDRS_SECTORS))
  measured = np.zeros(len(ETDRS_SECTORS))
  for i, name in enumerate(ETDRS_SECTORS):
    weight = masks[name]
    seen = weight * covered
    coverage[i] = seen.sum() / weight.sum()
    measured[i] = np.sum(seen * np.isfinite(maps[measured_channel])) / weight.sum()
    for c in range(maps.shape[0]):
      known = seen * np.isfinite(maps[c])
      if known.sum() >= min_measured * weight.sum():   # this map's own measured share
        means[i, c] = np.sum(known * np.nan_to_num(maps[c])) / known.sum()
  return means, coverage, measured


def sector_volumes_mm3(mean_height_um: np.ndarray) -> np.ndarray:
  """Per ETDRS sector, the volume (mm3) of a layer of that mean height (um) over the sector's
  area: the mean over the measured part of the sector stands for the whole sector."""
  return np.asarray(mean_height_um, np.float64) * 1e-3 * ETDRS_AREAS_MM2


def analyse_volume(values: np.ndarray, inner: np.ndarray, positions_mm: np.ndarray,
                   col_mm: float, laterality: str,
                   fovea_mm: Optional[Sequence[float]] = None,
                   step_mm: float = GRID_STEP_MM, reach_mm: float = REACH_MM,
                   measured_channel: int = -1) -> dict:
  """Maps, fovea and ETDRS table of one volume.

  Args:
    values: [N, C, W] thickness in um per B-scan, map and column (layers and total).
    inner: [N, W] inner-retina thickness (for the fovea).
    positions_mm, col_mm: B-scan positions and column spacing.
    laterality: 'OD' or 'OS'. fovea_mm: (x, y) to use instead of searching.
    measured_channel: the map whose known values make a sector point measured.
  Returns:
    dict: maps [C, G, G], map_x_mm [G], map_y_mm [G], map_covered [G, G], fovea_mm [2],
    fovea_found (bool: found automatically), etdrs_um [9, C], etdrs_coverage [9],
    etdrs_measured [9].
  """
  centre, size = scan_grid(positions_mm, values.shape[-1], col_mm, step_mm)
  x_mm, y_mm = grid_axes(centre, size, step_mm)
  both = np.concatenate([values, inner[:, None]], axis=1)
  maps, covered = enface_maps(both, positions_mm, col_mm, x_mm, y_mm, reach_mm)
  found = fovea_mm is None
  if found:
    inside = scanned_area(positions_mm, values.shape[-1], col_mm, x_mm, y_mm)
    fovea_mm = find_fovea(maps[-1], x_mm, y_mm, centre, inside)
    if fovea_mm is None:
      fovea_mm, found = centre, False
  masks = etdrs_masks(laterality, step_mm)
  m = next(iter(masks.values())).shape[0]
  fx, fy = grid_axes(tuple(fovea_mm), m, step_mm)
  centred, centred_covered = enface_maps(values, positions_mm, col_mm, fx, fy, reach_mm)
  means, coverage, measured = etdrs_table(centred, centred_covered, masks, measured_channel)
  return {"maps": maps[:-1], "map_x_mm": x_mm, "map_y_mm": y_mm, "map_covered": covered,
          "fovea_mm": np.asarray(fovea_mm, np.float64), "fovea_found": found,
          "etdrs_um": means, "etdrs_coverage": coverage, "etdrs_measured": measured}
