"""A seeded OCT B-scan phantom with exact labels.

Seven layers stacked upward from Bruch's membrane with Duke-like median thicknesses, smooth
curvature and tilt, a foveal pit where the inner layers thin out, per-layer reflectivity,
multiplicative speckle, vessel shadows, optional dark cysts (labelled with their enclosing
layer) and a per-scan gain. Scan i depends only on (seed, i), so the same seed gives the same
images whatever the number of scans asked for.
"""

import numpy as np
from scipy import ndimage

from octseg_jax.data.scans import SPECTRALIS_ROW_UM, ScanSet, bscan_name, label_map

# Median layer thickness in rows of a 496-row Duke Spectralis B-scan (classes 1..7).
DUKE_THICKNESS_496 = np.array([9.0, 17.0, 8.0, 7.0, 22.0, 8.0, 7.0])
# Mean reflectivity of background (vitreous) and classes 1..7 (NFL, GCL+IPL, INL, OPL,
# ONL+ISM, ISE, RPE): NFL, IPL, OPL, ISE and RPE bright; GCL, INL, ONL dark.
REFLECTIVITY = np.array([0.05, 0.75, 0.45, 0.22, 0.6, 0.18, 0.72, 0.95])
CHOROID = 0.5


def _smooth_wave(rng, x, amplitude, n_terms=3):
  """Sum of a few low-frequency sinusoids with random phases: a smooth random profile."""
  out = np.zeros_like(x)
  for k in range(1, n_terms + 1):
    out += rng.normal(0, amplitude / k) * np.sin(2 * np.pi * k * x / 2 + rng.uniform(0, 2 * np.pi))
  return out


def boundaries(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """Boundary rows (float) [8, W] for one scan: ILM, ..., BM, top to bottom."""
  scale = height / 496.0
  u = np.linspace(-1, 1, width)                                   # column coordinate
  fovea = rng.uniform(-0.35, 0.35)
  pit_width = rng.uniform(0.12, 0.22)
  pit = np.exp(-0.5 * ((u - fovea) / pit_width) ** 2)             # 1 at the foveal centre
  thick = DUKE_THICKNESS_496 * scale * rng.uniform(0.85, 1.15, size=7)
  t = thick[:, None] * (1 + _smooth_wave(rng, u[None, :].repeat(7, 0), 0.08))
  # Inner layers (NFL..OPL) thin out in the pit; ONL thickens slightly.
  depth = rng.uniform(0.75, 0.95)
  t[:4] *= 1 - depth * pit
  t[4] *= 1 + 0.35 * pit
  t[0] *= 1 + 0.8 * np.clip(u - fovea, 0, None)                   # NFL thicker towards the disc
  t = np.clip(t, 0, None)
  bm = (0.62 * height + rng.uniform(-0.06, 0.06) * height
        + rng.uniform(-0.05, 0.05) * height * u                   # tilt
        + rng.uniform(0.0, 0.08) * height * u ** 2                # curvature
        + _smooth_wave(rng, u, 0.01 * height))
  b = np.empty((8, width))
  b[7] = bm
  for k in range(6, -1, -1):                                      # stack layers upward
    b[k] = b[k + 1] - t[k]
  return b


def render(rng: np.random.Generator, mask: np.ndarray, b: np.ndarray, cysts: bool,
           fluid=None):
  """Renders a speckled uint8 B-scan for a label map and its boundaries; returns it with its
  fluid mask (uint8, 1 inside the cysts; the cysts keep their layer in the label map).
  fluid: a given fluid mask [H, W] drawn as cysts (instead of random ones)."""
  height, width = mask.shape
  rows = np.arange(height)[:, None]
  signal = REFLECTIVITY[mask].astype(np.float64)
  fluid = np.zeros(mask.shape, np.uint8) if fluid is None else np.asarray(fluid, np.uint8)
  # GCL (dark) over IPL (bright) inside class 2: a gradient with depth.
  in2 = mask == 2
  frac = np.clip((rows - b[1]) / np.maximum(b[2] - b[1], 1), 0, 1)
  signal[in2] = (0.3 + 0.35 * frac)[in2]
  below = rows >= np.floor(b[7])
  signal[below] = (CHOROID * np.exp(-(rows - b[7]) / (0.12 * height)))[below]
  signal[fluid > 0] = 0.04
  if cysts:
    for _ in range(rng.integers(0, 4)):
      k = rng.choice([3, 5])                                      # cysts sit in INL or ONL
      c = rng.integers(int(0.1 * width), int(0.9 * width))
      top, bot = b[k - 1, c], b[k, c]
      if bot - top < 4:
        continue
      r0 = (top + bot) / 2
      ry, rx = 0.35 * (bot - top), rng.uniform(4, 14) * width / 500
      inside = ((rows - r0) / ry) ** 2 + ((np.arange(width)[None] - c) / rx) ** 2 < 1
      signal[inside & (mask == k)] = 0.04
      fluid[inside & (mask == k)] = 1
  for _ in range(rng.integers(1, 5)):                             # vessel shadows
    c = rng.integers(0, width)
    half = rng.uniform(2, 6) * width / 500
    cols = np.abs(np.arange(width) - c) < half
    shadow = (rows > b[1][None, :]) & cols[None, :]
    signal[shadow] *= rng.uniform(0.35, 0.6)
  signal = ndimage.gaussian_filter(signal, sigma=(0.7, 1.2))
  speckle = rng.gamma(shape=4.0, scale=1 / 4.0, size=signal.shape)
  noisy = signal * speckle + rng.normal(0, 0.02, size=signal.shape)
  gain = rng.uniform(0.45, 1.15)                                  # device/session brightness
  return np.clip(255 * gain * np.clip(noisy, 0, None) ** 0.8, 0, 255).astype(np.uint8), fluid


def generate(num_scans: int, height: int = 496, width: int = 512, seed: int = 0,
             cysts: bool = True, scans_per_subject: int = 8) -> ScanSet:
  """Generates `num_scans` phantom B-scans; scans are grouped into pseudo-subjects of
  `scans_per_subject` so that subject-wise splits behave as on real data."""
  images = np.empty((num_scans, height, width), np.uint8)
  masks = np.empty((num_scans, height, width), np.uint8)
  fluid = np.empty((num_scans, height, width), np.uint8)
  for i in range(num_scans):
    rng = np.random.default_rng([seed, i])
    b = boundaries(rng, height, width)
    masks[i] = label_map(b, height)
    images[i], fluid[i] = render(rng, masks[i], b, cysts)
  subjects = np.arange(num_scans) // scans_per_subject + 1
  names = [f"phantom_{seed}_{i:04d}" for i in range(num_scans)]
  return ScanSet(images, masks, subjects, names, f"synthetic(seed={seed})", fluid=fluid)


# Volume phantom: known thickness on a 2-D en-face plane, the pit centred on PIT_OFFSET_MM from
# the scan centre. Layer thickness is a whole number of rows everywhere, so a label map measures
# it exactly whatever the (tilted, curved) depth of Bruch's membrane.
PIT_SIGMA_MM = 0.4
PIT_OFFSET_MM = (0.3, -0.2)


def volume_thickness_rows(dx_mm: np.ndarray, dy_mm: np.ndarray, laterality: str = "OD",
                          row_um: float = SPECTRALIS_ROW_UM) -> np.ndarray:
  """True layer thickness in whole rows [7, ...] at en-face offsets (dx right, dy superior, mm)
  from the foveal pit: the inner layers (NFL..OPL) thin out in a Gaussian pit, the ONL
  thickens there, and the NFL grows towards the disc (nasal: right for OD, left for OS)."""
  base = DUKE_THICKNESS_496 * SPECTRALIS_ROW_UM / row_um        # rows at this row size
  pit = np.exp(-0.5 * (dx_mm ** 2 + dy_mm ** 2) / PIT_SIGMA_MM ** 2)
  nasal = dx_mm if laterality == "OD" else -dx_mm
  factor = np.ones((7,) + np.shape(pit))
  factor[:4] = 1 - 0.85 * pit
  factor[4] = 1 + 0.35 * pit
  factor[0] *= 1 + 0.25 * np.clip(nasal, 0, None)
  return np.round(base.reshape((7,) + (1,) * np.ndim(pit)) * factor)


def cyst_fluid(b: np.ndarray, x: np.ndarray, y: np.ndarray, fovea, cysts, height: int):
  """Fluid masks [N, H, W] of ellipsoidal cysts centred in the ONL (class 5).

  b: boundaries [N, 8, W]; x [W], y [N] in mm; cysts: (dx_mm, dy_mm, ax_mm, ay_mm, az_rows)
  per cyst, the centre relative to the fovea (dy superior) and the semi-axes (x, y in mm, depth
  in rows). The depth centre is the ONL's middle row in each column."""
  rows = np.arange(height)[None, :, None]
  centre = (b[:, 4] + b[:, 5])[:, None, :] / 2.0                           # [N, 1, W]
  fluid = np.zeros((len(y), height, len(x)), bool)
  for dx, dy, ax, ay, az in cysts:
    en_face = ((x[None, :] - fovea[0] - dx) / ax) ** 2 + ((y[:, None] - fovea[1] - dy) / ay) ** 2
    fluid |= en_face[:, None, :] + ((rows + 0.5 - centre) / az) ** 2 < 1
  return fluid.astype(np.uint8)


def cyst_volume_mm3(cyst, row_mm: float) -> float:
  """The true volume of a cyst of cyst_fluid: 4/3 pi ax ay az."""
  _, _, ax, ay, az = cyst
  return 4.0 / 3.0 * np.pi * ax * ay * az * row_mm


def generate_volume(num_bscans: int = 61, height: int = 496, width: int = 512, seed: int = 0,
                    scale_mm=(0.125, SPECTRALIS_ROW_UM / 1000, None), extent_mm: float = 7.5,
                    shape: str = "flat", laterality: str = "OD", render_images: bool = True,
                    cysts=()):
  """A phantom volume with known layer thickness and a 2-D foveal pit.

  B-scan 0 is inferior (eyepy's order). The pit sits at PIT_OFFSET_MM from the scan centre.
  shape: 'flat' (Bruch's membrane on one row) or 'curved' (tilted in both directions and
  bowl-shaped, +-10% of the height). scale_mm: (between B-scans, per row, per column); a None
  column spacing spreads `width` columns over extent_mm. cysts: ellipsoids in the ONL (see
  cyst_fluid), drawn dark and marked as fluid.
  Returns (Volume, dict with fovea_mm (x, y), thickness_rows [N, 7, W] and fluid [N, H, W]).
  """
  from octseg_jax.data.volumes import Volume
  if shape not in ("flat", "curved"):
    raise ValueError(f"shape must be 'flat' or 'curved', got {shape!r}")
  dz, row_mm, col_mm = scale_mm
  col_mm = col_mm or extent_mm / (width - 1)
  x = np.arange(width) * col_mm                                    # [W]
  y = np.arange(num_bscans) * dz                                   # [N], superior upwards
  fovea = (x[-1] / 2 + PIT_OFFSET_MM[0], y[-1] / 2 + PIT_OFFSET_MM[1])
  dx, dy = x[None, :] - fovea[0], y[:, None] - fovea[1]            # [1, W], [N, 1]
  t = volume_thickness_rows(dx, dy, laterality, row_mm * 1000)     # [7, N, W]
  t = np.moveaxis(t, 0, 1)                                         # [N, 7, W]
  u, v = (x[None, :] - x[-1] / 2) / x[-1], (y[:, None] - y[-1] / 2) / max(y[-1], 1e-9)
  bm = np.round(0.8 * height) + np.zeros((num_bscans, width))
  if shape == "curved":
    bm = bm + height * (0.06 * u - 0.04 * v - 0.1 * (u ** 2 + v ** 2)) + 0.37
  b = np.empty((num_bscans, 8, width))
  b[:, 7] = bm
  for k in range(6, -1, -1):
    b[:, k] = b[:, k + 1] - t[:, k]
  if b.min() < 1:
    raise ValueError(f"height {height} is too small for the phantom's layers")
  masks = np.stack([label_map(bi, height) for bi in b])
  fluid = cyst_fluid(b, x, y, fovea, cysts, height)
  images = np.zeros_like(masks)
  if render_images:
    for i in range(num_bscans):
      images[i] = render(np.random.default_rng([seed, i]), masks[i], b[i], cysts=False,
                         fluid=fluid[i])[0]
  names = [bscan_name("phantom_volume", i) for i in range(num_bscans)]
  vol = Volume(images, masks, np.ones(num_bscans, bool), y, (dz, row_mm, col_mm), laterality,
               names, f"synthetic_volume(seed={seed}, shape={shape})")
  return vol, {"fovea_mm": np.array(fovea), "thickness_rows": t, "fluid": fluid}
