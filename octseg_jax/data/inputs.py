"""Reads whatever a user points --input at: a .npz, a Duke .mat, an image, a scanner file
(HEYEX .vol, .e2e, a HEYEX XML folder, eyepy .eye), or a folder of these."""

import glob
import os

from octseg_jax.data import duke, folder, volumes
from octseg_jax.errors import fail

SCAN_SUFFIXES = (".npz", ".mat") + volumes.SCANNER_SUFFIXES + folder.IMAGE_SUFFIXES


def load_file(path: str, require_masks: bool = False, volume_options=None):
  """One ScanSet. volume_options (predict: dict(force=--volume, laterality=--laterality)) reads
  .mat files and volume .npz files as whole volumes (the ScanSet carries its Volume); without
  it (eval, explain) a .mat gives its annotated B-scans. Scanner files are always volumes; with
  require_masks only their annotated B-scans are returned."""
  lower = path.rstrip("/").lower()
  if volume_options is not None and volumes.is_volume(path, volume_options.get("force", False)):
    vol = volumes.read_volume(path, volume_options.get("laterality"))
    return vol.to_scanset(annotated_only=require_masks)
  if lower.endswith(volumes.SCANNER_SUFFIXES) or volumes.is_heyex_xml_folder(path):
    return volumes.read_volume(path).to_scanset(annotated_only=require_masks)
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


def load_path(path: str, require_masks: bool = False, volume_options=None) -> list:
  """Returns a list of ScanSets, one per input file (a HEYEX XML folder is one input)."""
  if not path:
    raise fail("--input", "no input path given")
  if not os.path.exists(path):
    raise fail(path, "no such file or folder")
  if os.path.isfile(path) or volumes.is_heyex_xml_folder(path):
    return [load_file(path, require_masks, volume_options)]
  if os.path.isdir(os.path.join(path, "images")):
    return folder.load_folder(path, require_masks)
  files = sorted(f for f in glob.glob(os.path.join(path, "*")) if f.lower().endswith(SCAN_SUFFIXES)
                 or volumes.is_heyex_xml_folder(f))
  if not files:
    raise fail(path, f"folder holds no scans ({', '.join(SCAN_SUFFIXES)}) and no images/ folder")
  return [load_file(f, require_masks, volume_options) for f in files]
