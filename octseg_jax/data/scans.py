"""The ScanSet container and the checks every reader applies to what it read."""

import dataclasses
import re
from typing import Optional

import numpy as np

from octseg_jax.errors import fail
from octseg_jax.anatomy import IGNORE, NUM_CLASSES, NUM_LAYERS

MAX_IMAGE_SIDE = 4096     # default of config data.max_image_side
SPECTRALIS_ROW_UM = 3.87  # Heidelberg Spectralis axial pixel size (Duke DME): um per row


@dataclasses.dataclass
class ScanSet:
  """B-scans of one file (or one generated set) with optional masks.

  images: uint8 [N, H, W]. masks: uint8 [N, H, W] (0..7, 255 = ignore) or None.
  subjects: int [N], the eye/subject each scan belongs to (for subject-wise splits).
  names: one name per scan, used for output files.
  source: the file or generator the scans came from.
  volume: the data.volumes.Volume these scans are, when the input was read as a volume.
  fluid: uint8 [N, H, W] (1 = intraretinal/subretinal fluid) when the source annotates it,
    else None. Fluid pixels keep their layer in `masks` (fluid overlaps layers).
  volume_scale: (scale_mm, source) of the volume the scans came from (Volume.scale_mm and
    scale_source), kept by subset (eval's annotated B-scans of a scanner file), else None.
  """
  images: np.ndarray
  masks: Optional[np.ndarray]
  subjects: np.ndarray
  names: list
  source: str
  volume: Optional[object] = None
  fluid: Optional[np.ndarray] = None
  volume_scale: Optional[tuple] = None

  def __len__(self) -> int:
    return len(self.images)

  def subset(self, index) -> "ScanSet":
    index = np.asarray(index, int)
    return ScanSet(self.images[index], None if self.masks is None else self.masks[index],
                   self.subjects[index], [self.names[i] for i in index], self.source,
                   fluid=None if self.fluid is None else self.fluid[index],
                   volume_scale=self.volume_scale)


def label_map(bounds: np.ndarray, height: int) -> np.ndarray:
  """Boundaries [8, W] (finite rows, in anatomical order) -> uint8 [H, W]: row r is layer k
  when floor(b_k) <= r < floor(b_k+1), background elsewhere. The Duke files' rule for the
  grader's boundaries (see the data README); the phantom draws its masks with it too."""
  rows = np.arange(height)[:, None]
  fb = np.floor(bounds)
  mask = np.zeros((height, bounds.shape[1]), np.uint8)
  for k in range(NUM_LAYERS):
    mask[(rows >= fb[k]) & (rows < fb[k + 1])] = k + 1
  return mask


def bscan_name(stem: str, index: int) -> str:
  """The name of B-scan `index` of the volume `stem` (a Duke file, a scanner volume): STEM_bII."""
  return f"{stem}_b{int(index):02d}"


def volume_of(name) -> Optional[str]:
  """The volume STEM (casefolded: Duke's Subject_SS.mat and the shared subject_SS.npz are one
  eye) of a scan named bscan_name(STEM, i); None for other names."""
  found = re.fullmatch(r"(.+)_b\d+", str(name).casefold())
  return found.group(1) if found else None


def check_image_side(rows: int, cols: int, path, max_side: int = MAX_IMAGE_SIDE) -> None:
  """Refuses scans larger than `max_side` in either direction (they would exhaust memory)."""
  if rows > max_side or cols > max_side:
    raise fail(path, f"image of {rows}x{cols} pixels exceeds data.max_image_side={max_side} "
               "(raise it with --config.data.max_image_side if the machine has the memory)")


def to_uint8_images(images, path, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
  """Checks and converts images to uint8 [N, H, W].

  Accepted: [H, W], [N, H, W], colour [H, W, 3|4] or [N, H, W, 3|4] (converted to grey with
  ITU-R 601 weights); uint8, other integers in 0..255, or floats in 0..1 or 0..255. Scans with
  more than `max_side` rows or columns are refused.
  """
  images = np.asarray(images)
  if images.dtype == bool or not (np.issubdtype(images.dtype, np.number)) or \
     np.issubdtype(images.dtype, np.complexfloating):
    raise fail(path, f"images have dtype {images.dtype}, expected real numbers")
  given_floats = np.issubdtype(images.dtype, np.floating)
  if images.ndim >= 3 and images.shape[-1] in (3, 4) and images.shape[-2] > 4:
    rgb = images[..., :3].astype(np.float64)
    images = rgb @ np.array([0.299, 0.587, 0.114])
  if images.ndim == 2:
    images = images[None]
  if images.ndim != 3:
    raise fail(path, f"images have shape {images.shape}, expected [H, W] or [N, H, W]")
  if min(images.shape) == 0:
    raise fail(path, f"images are empty (shape {images.shape})")
  if images.shape[1] < 8 or images.shape[2] < 8:
    raise fail(path, f"images of {images.shape[1]}x{images.shape[2]} pixels are too small")
  check_image_side(images.shape[1], images.shape[2], path, max_side)
  if images.dtype == np.uint8:
    return images
  x = images.astype(np.float64)
  if not np.isfinite(x).all():
    raise fail(path, f"images contain {int((~np.isfinite(x)).sum())} NaN or infinite pixels")
  if x.min() < 0 or x.max() > 255:
    raise fail(path, f"image values span {x.min():g}..{x.max():g}, expected 0..1 or 0..255")
  if given_floats and x.max() <= 1.0:
    x = x * 255.0
  return np.round(x).astype(np.uint8)


def check_masks(masks, images: np.ndarray, path) -> np.ndarray:
  """Checks masks against their images and returns uint8 [N, H, W]."""
  masks = np.asarray(masks)
  if masks.ndim == 2:
    masks = masks[None]
  if masks.shape != images.shape:
    raise fail(path, f"masks have shape {masks.shape} but images {images.shape}")
  if not (np.issubdtype(masks.dtype, np.integer) or np.issubdtype(masks.dtype, np.floating)):
    raise fail(path, f"masks have dtype {masks.dtype}, expected integers")
  if np.issubdtype(masks.dtype, np.floating):
    if not np.isfinite(masks).all() or (masks != np.round(masks)).any():
      raise fail(path, "masks contain non-integer values")
  values = np.unique(masks)
  bad = values[((values < 0) | (values >= NUM_CLASSES)) & (values != IGNORE)]
  if bad.size:
    raise fail(path, f"mask values {bad[:5].tolist()} are outside 0..{NUM_CLASSES - 1} and "
               f"{IGNORE} (ignore)")
  return masks.astype(np.uint8)


def check_fluid(fluid, images: np.ndarray, path, field: str = "fluid") -> np.ndarray:
  """Checks a fluid mask against its images (same shape, values 0/1) -> uint8 [N, H, W]."""
  fluid = np.asarray(fluid)
  if fluid.ndim == 2:
    fluid = fluid[None]
  if fluid.shape != images.shape:
    raise fail(path, f"{field} has shape {fluid.shape} but images {images.shape}")
  if fluid.dtype == bool:
    return fluid.astype(np.uint8)
  if not (np.issubdtype(fluid.dtype, np.integer) or np.issubdtype(fluid.dtype, np.floating)):
    raise fail(path, f"{field} has dtype {fluid.dtype}, expected 0/1 integers")
  if not np.isin(fluid, (0, 1)).all():
    raise fail(path, f"{field} holds values other than 0 and 1")
  return fluid.astype(np.uint8)


def check_index_field(values, count: int, path, field: str) -> np.ndarray:
  """A per-scan integer field (subject, bscan_index) as int64 [count].

  A scalar is repeated for every scan; anything else must hold `count` finite integers.
  """
  values = np.asarray(values)
  if values.dtype == bool or not np.issubdtype(values.dtype, np.number) or \
     np.issubdtype(values.dtype, np.complexfloating):
    raise fail(path, f"field '{field}' has dtype {values.dtype}, expected integers")
  if values.ndim == 0:
    values = np.full(count, values)
  values = values.reshape(-1) if values.size == count else values
  if values.shape != (count,):
    raise fail(path, f"field '{field}' has shape {values.shape}, expected ({count},) "
               "(one value per scan)")
  if not np.isfinite(values).all() or (values != np.round(values)).any():
    raise fail(path, f"field '{field}' holds NaN, infinite or non-integer values")
  if np.abs(values).max(initial=0) > 2 ** 31:
    raise fail(path, f"field '{field}' holds values beyond 2**31")
  return values.astype(np.int64)
