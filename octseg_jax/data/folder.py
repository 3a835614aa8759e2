"""Image/mask PNG pairs: DIR/images/NAME.png with DIR/masks/NAME.png (masks optional)."""

import glob
import os
from typing import Optional

import numpy as np

from octseg_jax.data.scans import (MAX_IMAGE_SIDE, ScanSet, check_image_side, check_masks,
                                   to_uint8_images)
from octseg_jax.errors import InputError, fail, library_reason

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def frame_to_array(im) -> np.ndarray:
  """One PIL frame as an array in 0..255 by the meaning of its mode.

  Grey and colour 8-bit modes are kept (colour becomes grey later); 1-bit to 0/255; 16-bit
  modes scaled by 255/65535; 32-bit integers by their range (0..255 kept, 0..65535 as 16-bit,
  else divided by the maximum); float ('F') by value range: 0..1 to 0..255, 0..255 kept, any
  other range stretched from its minimum and maximum; palette and other colour spaces via RGB
  (alpha dropped).
  """
  mode = im.mode
  if mode in ("L", "RGB"):
    return np.asarray(im)
  if mode.startswith("I;16"):
    return np.asarray(im, np.float64) * (255.0 / 65535.0)
  if mode in ("I", "F"):
    arr = np.asarray(im, np.float64)
    if not np.isfinite(arr).all():
      raise ValueError(f"{int((~np.isfinite(arr)).sum())} NaN or infinite pixels")
    lo, hi = float(arr.min()), float(arr.max())
    if mode == "F" and lo >= 0 and hi <= 1:
      return arr * 255.0
    if lo >= 0 and hi <= 255:
      return arr
    if mode == "I" and lo >= 0 and hi <= 65535:
      return arr * (255.0 / 65535.0)
    if hi > lo:
      return (arr - lo) * (255.0 / (hi - lo))
    return np.zeros_like(arr)
  if mode in ("1", "LA", "La"):
    return np.asarray(im.convert("L"))
  return np.asarray(im.convert("RGB"))                     # P, PA, RGBA, CMYK, YCbCr, LAB, HSV


def read_image(path: str, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
  """Reads every page of an image file as [N, H, W] or [N, H, W, 3] in 0..255.

  EXIF orientation is applied; pages of a multi-page TIFF must share one size; images beyond
  `max_side` rows or columns are refused before their pixels are decoded.
  """
  from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError
  try:
    with Image.open(path) as im:
      check_image_side(im.height, im.width, path, max_side)
      pages = []
      for frame in ImageSequence.Iterator(im):
        frame = ImageOps.exif_transpose(frame)
        check_image_side(frame.height, frame.width, path, max_side)
        pages.append(frame_to_array(frame))
  except FileNotFoundError:
    raise fail(path, "no such file") from None
  except InputError:
    raise
  except UnidentifiedImageError:           # its message repeats the path and says no more
    raise fail(path, "not a readable image (no image format Pillow knows: another kind of "
               "file under an image suffix, or damaged from its first bytes)") from None
  except Exception as e:  # PIL raises many types for damaged files.
    raise fail(path, f"not a readable image ({library_reason(e)})") from None
  shapes = sorted({p.shape for p in pages})
  if len(shapes) != 1:
    raise fail(path, f"pages of different sizes {shapes[:3]}; expected one size for all pages")
  pages = np.stack(pages)
  if pages.dtype != np.uint8:                 # converted pages are floats in 0..255
    pages = np.round(np.clip(pages, 0, 255)).astype(np.uint8)
  return pages


def read_mask(path: str) -> np.ndarray:
  from PIL import Image
  try:
    with Image.open(path) as im:
      im.load()
      return np.asarray(im)
  except Exception as e:  # PIL raises many types for damaged files.
    raise fail(path, f"not a readable mask image ({library_reason(e)})") from None


def mask_path_of(path: str) -> Optional[str]:
  """Where the mask of the image DIR/images/NAME is read from (DIR/masks/NAME); None for an
  image that is not in an images/ folder (it has no mask)."""
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.basename(folder) != "images":
    return None
  return os.path.join(os.path.dirname(folder), "masks", os.path.basename(path))


def load_image_file(path: str, max_side: int = MAX_IMAGE_SIDE) -> ScanSet:
  """One image file as a ScanSet (one scan per page); for a one-page image under images/, the
  mask is taken from ../masks/NAME if present."""
  images = to_uint8_images(read_image(path, max_side), path, max_side)     # [N, H, W]
  mask = None
  stem = os.path.splitext(os.path.basename(path))[0]
  mask_path = mask_path_of(path)
  if mask_path is not None and os.path.exists(mask_path):
    if len(images) != 1:
      raise fail(path, f"has {len(images)} pages; masks are read for one-page images only")
    mask = check_masks(read_mask(mask_path), images, mask_path)
  names = [stem] if len(images) == 1 else [f"{stem}_p{i:03d}" for i in range(len(images))]
  return ScanSet(images, mask, np.zeros(len(images), int), names, path)


def load_folder(path: str, require_masks: bool = False, max_side: int = MAX_IMAGE_SIDE) -> list:
  """DIR/images/*.png (+ DIR/masks/*.png): a list of one-scan ScanSets (sizes may differ)."""
  image_dir = os.path.join(path, "images")
  if not os.path.isdir(image_dir):
    raise fail(path, "no images/ folder inside")
  files = sorted(f for f in glob.glob(os.path.join(image_dir, "*"))
                 if f.lower().endswith(IMAGE_SUFFIXES))
  if not files:
    raise fail(image_dir, "no image files")
  sets = [load_image_file(f, max_side) for f in files]
  if require_masks:
    missing = [s.source for s in sets if s.masks is None]
    if missing:
      raise fail(missing[0], "has no mask of the same name in masks/")
  return sets
