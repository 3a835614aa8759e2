"""Pure preprocessing: normalise, find and crop the retina band, resize, pad, one-hot.

Everything here is a function of arrays only (no files, no logging). Images are uint8 or float
[H, W]; masks are uint8 [H, W] with class ids 0..K-1 and IGNORE (255) for unlabelled pixels.
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage

from octseg_jax.anatomy import FLUID_CODE, FLUID_UNKNOWN_LAYER, IGNORE

NORMALISATIONS = ("percentile", "divide255")     # the first is the default
BAND_HEIGHT = 224        # rows kept around the retina by default (data.recipe.band_height)
# Training labels of a model with a fluid head carry the fluid mask in the same uint8 map, so
# that every augmentation moves fluid exactly with the layers: a fluid pixel of layer k is
# FLUID_CODE + k, a fluid pixel of unknown layer FLUID_UNKNOWN_LAYER; IGNORE stays "nothing
# known" (padding, pixels shifted in).


def encode_fluid(mask: np.ndarray, fluid: np.ndarray) -> np.ndarray:
  """Layer mask (0..K-1, IGNORE) and fluid mask (0/1) -> one uint8 label map (see FLUID_CODE)."""
  mask = np.asarray(mask, np.uint8)
  f = np.asarray(fluid).astype(bool)
  out = mask.copy()
  known = mask < FLUID_CODE
  out[f & known] += FLUID_CODE
  out[f & (mask == IGNORE)] = FLUID_UNKNOWN_LAYER
  return out


def decode_fluid(labels, xp=np):
  """Label map of encode_fluid (or a plain layer mask) -> (layer labels with IGNORE, fluid
  0/1, fluid known bool); works on numpy and jax arrays (xp)."""
  lab = labels.astype(xp.int32)
  layers = xp.where(lab < FLUID_CODE, lab,
                    xp.where(lab < FLUID_UNKNOWN_LAYER, lab - FLUID_CODE, IGNORE))
  fluid = (lab >= FLUID_CODE) & (lab != IGNORE)
  return layers.astype(labels.dtype), fluid, lab != IGNORE


def fluid_columns(fluid, xp=np):
  """The columns [..., W] of fluid masks [..., H, W] with at least one pixel of marked fluid
  (numpy or jax arrays, xp)."""
  return xp.any(fluid > 0, axis=-2)


def normalise(image: np.ndarray, method: str = "percentile", low: float = 1.0,
              high: float = 99.5) -> np.ndarray:
  """Maps intensities to [0, 1] as float32.

  'percentile' maps the image's `low` and `high` percentiles to 0 and 1 and clips, so a dim
  scan and a bright scan of the same eye look alike to the model (gain invariance).
  'divide255' is the paper's x / 255. A constant image maps to zeros.
  """
  x = np.asarray(image, np.float32)
  if method == "divide255":
    return np.clip(x / np.float32(255.0), 0.0, 1.0)
  if method != "percentile":
    raise ValueError(f"unknown normalisation {method!r}; valid: {NORMALISATIONS}")
  lo, hi = np.percentile(x, [low, high])
  if not hi > lo:
    return np.zeros_like(x)
  return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


PADDING_TOLERANCE = 0.05     # padding lies within 5% of the image's maximum (JPEG, rescaling)
PADDING_RING = 8             # rows past its edge where JPEG rings (one 8 x 8 block)


def edge_padding(x: np.ndarray) -> np.ndarray:
  """Registration padding [H, W] bool: per column, the runs of rows from the top and from the
  bottom edge that lie within PADDING_TOLERANCE of the image's (finite) maximum, and the
  PADDING_RING rows beyond a run. Runs of any length count: where Duke's padding ends, its
  columns hold 1-2 padded rows (a longer minimum moved the band of a scan at gain 0.9 by up to
  100 rows). A scan cropped so tightly that its brightest layer touches an edge loses those
  rows to this test; find_retina_band then fills them with the median. Duke's padding is
  exactly 255, but a JPEG, a 16-bit export or a rescaled copy of the scan moves it below 255
  (to 229 at a gain of 0.9), where it would pass for the brightest layer."""
  h = x.shape[0]
  peak = np.nanmax(x) if np.isfinite(x).any() else 0.0
  bright = x >= (1 - PADDING_TOLERANCE) * peak
  top = np.cumprod(bright, axis=0, dtype=bool).sum(axis=0)               # [W] rows from the top
  bottom = np.cumprod(bright[::-1], axis=0, dtype=bool).sum(axis=0)
  rows = np.arange(h)[:, None]
  ring = lambda run: np.where(run > 0, np.minimum(run + PADDING_RING, h), 0)
  out = (rows < ring(top)) | (rows >= h - ring(bottom))
  return out & (peak > 0)


def find_retina_band(image: np.ndarray, height: int) -> int:
  """Returns the first row of a `height`-row band centred on the retina, from the image alone.

  Per column the retina is the run between the first row brighter than halfway between the
  vitreous level and the column's peak (the ILM side) and the peak itself (the RPE, the
  brightest layer). Saturated pixels (255) and registration padding (edge_padding) are
  ignored. The band is centred on the middle of [2nd percentile of tops, 98th percentile of
  peaks + a margin for the RPE/BM], so a tilted retina stays inside it.
  """
  h = image.shape[0]
  if height <= 0 or height >= h:
    return 0
  x = np.asarray(image, np.float32)
  valid = (x < 255) & ~edge_padding(x)
  fill = np.median(x[valid]) if valid.any() else 0.0
  x = np.where(valid, x, fill)
  smooth = ndimage.gaussian_filter(x, sigma=(4.0, 8.0))
  peak_rows = np.argmax(smooth, axis=0)                               # [W]
  peak = smooth[peak_rows, np.arange(smooth.shape[1])]                # [W]
  floor = np.percentile(smooth, 20, axis=0)                           # [W]
  above = smooth >= ((floor + peak) / 2)[None, :]                     # [H, W]
  tops = np.argmax(above, axis=0)                                     # first bright row
  top = np.percentile(tops, 2)
  bottom = np.percentile(peak_rows, 98) + 0.06 * h                    # RPE + BM margin
  centre = (top + bottom) / 2
  return int(np.clip(round(centre - height / 2), 0, h - height))


def resize_bilinear(x: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
  """Bilinear resize of [H, W] or [H, W, C] over the first two axes (half-pixel centres)."""
  x = np.asarray(x, np.float32)
  zoom = [shape[0] / x.shape[0], shape[1] / x.shape[1]] + [1.0] * (x.ndim - 2)
  if x.shape[:2] == tuple(shape):
    return x
  # grid_mode=True puts samples at pixel centres, like jax.image.resize and OpenCV.
  return ndimage.zoom(x, zoom, order=1, mode="nearest", grid_mode=True).astype(np.float32)


def resize_nearest(mask: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of an integer [H, W] map (pixel centres), keeping labels exact."""
  rows = np.minimum(((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).astype(int),
                    mask.shape[0] - 1)
  cols = np.minimum(((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).astype(int),
                    mask.shape[1] - 1)
  return mask[rows[:, None], cols[None, :]]


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """[...] int -> [..., K] float32; IGNORE (or any id >= K) gives an all-zero vector."""
  return (labels[..., None] == np.arange(num_classes)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How a raw B-scan becomes a model input.

  band_height: rows kept around the retina (0 keeps all rows).
  resize_to: (h, w) the band is resized to, or None for native resolution.
  multiple: model inputs are padded to a multiple of this (2 ** number of pooling steps).
  normalisation: 'percentile' (default, gain invariant) or 'divide255' (the paper).
  """
  band_height: int = BAND_HEIGHT
  resize_to: Optional[Tuple[int, int]] = None
  multiple: int = 16
  normalisation: str = NORMALISATIONS[0]


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where a model input came from in its raw scan, to map predictions back."""
  top: int          # first raw row of the band
  band_rows: int    # rows of the band taken from the raw scan (may be < band height)
  width: int        # raw columns
  height: int       # raw rows
  model_rows: int   # rows of the model input holding scan content (before padding)
  model_cols: int


def input_multiple(widths) -> int:
  """The multiple a model input's sides must be for a SegNet of these channel widths: one 2x
  pooling step per width, so 2 ** len(widths)."""
  return 2 ** len(widths)


def input_shape(recipe: Recipe, raw_shape: Tuple[int, int]) -> Tuple[int, int]:
  """Model input size (before batch padding) for a raw scan of `raw_shape`."""
  if recipe.resize_to is not None:
    rows, cols = recipe.resize_to
  else:
    rows = recipe.band_height if 0 < recipe.band_height < raw_shape[0] else raw_shape[0]
    cols = raw_shape[1]
  return round_up(rows, recipe.multiple), round_up(cols, recipe.multiple)


def prepare(image: np.ndarray, mask: Optional[np.ndarray], recipe: Recipe,
            pad_to: Optional[Tuple[int, int]] = None):
  """Raw scan (+ mask) -> model input float32 [h, w], mask uint8 [h, w] or None, Placement.

  Padding (to the recipe's multiple, or to `pad_to` for batching) repeats edge pixels in the
  image and marks the mask IGNORE, so padded pixels never count in loss or metrics.
  """
  height, width = image.shape
  band = recipe.band_height if 0 < recipe.band_height < height else height
  top = find_retina_band(image, band) if band < height else 0
  img = image[top:top + band]
  msk = None if mask is None else mask[top:top + band]
  x = normalise(img, recipe.normalisation)
  if recipe.resize_to is not None:
    x = resize_bilinear(x, recipe.resize_to)
    if msk is not None:
      msk = resize_nearest(msk, recipe.resize_to)
  model_rows, model_cols = x.shape
  target = pad_to or input_shape(recipe, image.shape)
  if target[0] < model_rows or target[1] < model_cols:
    raise ValueError(f"pad_to {target} is smaller than the prepared scan {x.shape}")
  pads = ((0, target[0] - model_rows), (0, target[1] - model_cols))
  x = np.pad(x, pads, mode="edge")
  if msk is not None:
    msk = np.pad(msk, pads, constant_values=IGNORE)
  return x, msk, Placement(top, band, width, height, model_rows, model_cols)


def restore(probs: np.ndarray, placement: Placement, outside=None) -> np.ndarray:
  """Model-resolution class probabilities [h, w, K] -> raw-resolution [H, W, K].

  Padding is cut, a resized band is resized back bilinearly, and rows outside the band get
  `outside` [K] (default: probability 1 for background, class 0).
  """
  p = probs[:placement.model_rows, :placement.model_cols]
  p = resize_bilinear(p, (placement.band_rows, placement.width))
  out = np.zeros((placement.height, placement.width, probs.shape[-1]), np.float32)
  if outside is None:
    out[..., 0] = 1.0
  else:
    out[...] = outside
  out[placement.top:placement.top + placement.band_rows] = p
  return out


def restore_rows(rows: np.ndarray, placement: Placement) -> np.ndarray:
  """Model-resolution boundary rows [N, w] (edge coordinates: row r is the top edge of pixel
  row r) -> raw rows [N, W]: scaled by the band's resize factor, shifted by the band's top, and
  columns resampled at the raw column centres when the band was resized."""
  r = np.asarray(rows, np.float64)[:, :placement.model_cols]
  if placement.model_cols != placement.width:
    x = (np.arange(placement.width) + 0.5) * placement.model_cols / placement.width - 0.5
    grid = np.arange(placement.model_cols)
    r = np.stack([np.interp(x, grid, row) for row in r])
  return placement.top + r * placement.band_rows / placement.model_rows
