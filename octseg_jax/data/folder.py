"""Image/mask PNG pairs: DIR/images/NAME.png with DIR/masks/NAME.png (masks optional)."""

import glob
import os

import numpy as np

from octseg_jax.data.scans import ScanSet, check_masks, to_uint8_images
from octseg_jax.errors import fail

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def read_image(path: str) -> np.ndarray:
  """Reads one image file as an array (colour kept; to_uint8_images makes it grey)."""
  from PIL import Image
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode in ("I;16", "I;16B", "I"):
        arr = np.asarray(im, np.float64)
        return arr / max(arr.max(), 1) * 255.0   # 16-bit scans to 0..255
      if im.mode not in ("L", "RGB", "RGBA", "P"):
        im = im.convert("RGB")
      if im.mode == "P":
        im = im.convert("RGB")
      return np.asarray(im)
  except FileNotFoundError:
    raise fail(path, "no such file") from None
  except Exception as e:  # PIL raises many types for damaged files.
    raise fail(path, f"not a readable image ({type(e).__name__}: {str(e)[:120]})") from None


def read_mask(path: str) -> np.ndarray:
  from PIL import Image
  try:
    with Image.open(path) as im:
      im.load()
      return np.asarray(im)
  except Exception as e:  # PIL raises many types for damaged files.
    raise fail(path, f"not a readable mask image ({type(e).__name__}: {str(e)[:120]})") from None


def load_image_file(path: str) -> ScanSet:
  """One image file as a ScanSet of one scan; a mask is taken from ../masks/NAME if present."""
  image = to_uint8_images(read_image(path), path)
  if len(image) != 1:
    raise fail(path, f"expected one grey or colour image, got shape {image.shape}")
  mask = None
  name = os.path.basename(path)
  mask_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))), "masks", name)
  if os.path.basename(os.path.dirname(os.path.abspath(path))) == "images" and \
     os.path.exists(mask_path):
    mask = check_masks(read_mask(mask_path), image, mask_path)
  return ScanSet(image, mask, np.zeros(1, int), [os.path.splitext(name)[0]], path)


def load_folder(path: str, require_masks: bool = False) -> list:
  """DIR/images/*.png (+ DIR/masks/*.png): a list of one-scan ScanSets (sizes may differ)."""
  image_dir = os.path.join(path, "images")
  if not os.path.isdir(image_dir):
    raise fail(path, "no images/ folder inside")
  files = sorted(f for f in glob.glob(os.path.join(image_dir, "*"))
                 if f.lower().endswith(IMAGE_SUFFIXES))
  if not files:
    raise fail(image_dir, "no image files")
  sets = [load_image_file(f) for f in files]
  if require_masks:
    missing = [s.source for s in sets if s.masks is None]
    if missing:
      raise fail(missing[0], "has no mask of the same name in masks/")
  return sets
