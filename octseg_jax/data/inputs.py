"""Reads whatever a user points --input at: a .npz, a Duke .mat, an image, or a folder."""

import glob
import os

from octseg_jax.data import duke, folder
from octseg_jax.errors import fail

SCAN_SUFFIXES = (".npz", ".mat") + folder.IMAGE_SUFFIXES


def load_file(path: str, require_masks: bool = False):
  lower = path.lower()
  if lower.endswith(".npz"):
    return duke.load_npz(path, require_masks)
  if lower.endswith(".mat"):
    return duke.load_mat(path)
  if lower.endswith(folder.IMAGE_SUFFIXES):
    scans = folder.load_image_file(path)
    if require_masks and scans.masks is None:
      raise fail(path, "has no mask (expected ../masks/ with the same file name)")
    return scans
  raise fail(path, f"unsupported file type; expected one of {', '.join(SCAN_SUFFIXES)}")


def load_path(path: str, require_masks: bool = False) -> list:
  """Returns a list of ScanSets, one per input file."""
  if not path:
    raise fail("--input", "no input path given")
  if not os.path.exists(path):
    raise fail(path, "no such file or folder")
  if os.path.isfile(path):
    return [load_file(path, require_masks)]
  if os.path.isdir(os.path.join(path, "images")):
    return folder.load_folder(path, require_masks)
  files = sorted(f for f in glob.glob(os.path.join(path, "*")) if f.lower().endswith(SCAN_SUFFIXES))
  if not files:
    raise fail(path, f"folder holds no scans ({', '.join(SCAN_SUFFIXES)}) and no images/ folder")
  return [load_file(f, require_masks) for f in files]
