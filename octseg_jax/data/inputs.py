"""Reads whatever a user points --input at: a .npz, a Duke .mat, an image, a scanner file
(HEYEX .vol, .e2e, a HEYEX XML folder, eyepy .eye), or a folder of these.

Scripts stop at the first bad file (`load_path`); predict, explain and eval process every
readable file of a folder (`list_inputs`, then `read_files` or `read_scaled`, which read each
file with `load_file`) and report the others.
"""

import dataclasses
import os
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from octseg_jax.data import duke, folder, volumes
from octseg_jax.data.scans import MAX_IMAGE_SIDE
from octseg_jax.errors import InputError, fail, one_line

SCAN_SUFFIXES = (".npz", ".mat") + volumes.SCANNER_SUFFIXES + folder.IMAGE_SUFFIXES


def load_file(path: str, require_masks: bool = False, max_side: int = MAX_IMAGE_SIDE,
              volume_options=None):
  """One input file as a ScanSet; an InputError names the file and the problem.

  A .mat volume gives every B-scan when masks are not required, its annotated B-scans when
  they are. volume_options (predict: dict(force=--volume, laterality=--laterality)) reads .mat
  files and volume .npz files as whole volumes (the ScanSet carries its Volume). Scanner files
  are always volumes; with require_masks only their annotated B-scans are returned.
  """
  lower = path.rstrip("/").lower()
  if volume_options is not None and volumes.is_volume(path, volume_options.get("force", False)):
    vol = volumes.read_volume(path, volume_options.get("laterality"), max_side)
    return vol.to_scanset(annotated_only=require_masks)
  if lower.endswith(volumes.SCANNER_SUFFIXES) or volumes.is_heyex_xml_folder(path):
    return volumes.read_volume(path).to_scanset(annotated_only=require_masks)
  if lower.endswith(".npz"):
    return duke.load_npz(path, require_masks, max_side=max_side)
  if lower.endswith(".mat"):
    return duke.load_mat(path, annotated_only=require_masks, max_side=max_side)
  if lower.endswith(folder.IMAGE_SUFFIXES):
    scans = folder.load_image_file(path, max_side)
    if require_masks and scans.masks is None:
      where = folder.mask_path_of(path)
      raise fail(path, f"has no mask ({where} does not exist)" if where else
                 "has no mask (masks are read from DIR/masks/NAME for an image DIR/images/NAME; "
                 "this image is not in an images/ folder)")
    return scans
  raise fail(path, f"unsupported file type; expected one of {', '.join(SCAN_SUFFIXES)}")


def is_one_input(path: str) -> bool:
  """Whether --input=`path` names one input (a file, or a HEYEX XML export folder: one volume),
  which is read before the model is loaded and refused in one line, rather than a folder of
  inputs, each of which may fail on its own (errors.csv)."""
  return os.path.isfile(path) or volumes.is_heyex_xml_folder(path)


def list_inputs(path: str) -> Tuple[List[str], List[str]]:
  """(scan files, skipped entries) that --input=`path` names, both sorted.

  A file is its own list (an unsupported type is reported when it is read). A folder gives its
  files with a scan suffix, or those of its images/ subfolder when it has one (image/mask pairs);
  other entries (a README, a .json, subfolders, hidden files) are skipped. A HEYEX XML export
  folder is one input (a volume).
  """
  if not path:
    raise fail("--input", "no input path given")
  if not os.path.exists(path):
    raise fail(path, "no such file or folder")
  if is_one_input(path):
    return [path], []
  if not os.path.isdir(path):
    raise fail(path, "neither a file nor a folder")
  root = os.path.join(path, "images") if os.path.isdir(os.path.join(path, "images")) else path
  try:
    entries = sorted(os.listdir(root))
  except OSError as e:
    raise fail(root, f"cannot list the folder ({e.strerror})") from None
  files, skipped = [], []
  for name in entries:
    full = os.path.join(root, name)
    if root == path and name in ("images", "masks") and os.path.isdir(full):
      continue
    is_scan = (os.path.isfile(full) and not name.startswith(".")
               and name.lower().endswith(SCAN_SUFFIXES)) or volumes.is_heyex_xml_folder(full)
    (files if is_scan else skipped).append(full)
  if not files:
    raise fail(root, f"folder holds no scans ({', '.join(SCAN_SUFFIXES)}) and no images/ folder")
  return files, skipped


def load_path(path: str, require_masks: bool = False, max_side: int = MAX_IMAGE_SIDE,
              volume_options=None) -> list:
  """Returns a list of ScanSets, one per input file; stops at the first bad file."""
  files, _ = list_inputs(path)
  return [load_file(f, require_masks, max_side, volume_options) for f in files]


def read_files(files: Sequence[str], on_error: Callable[[str, str], None],
               max_side: int = MAX_IMAGE_SIDE,
               stop_on_error: bool = False,
               volume_options=None, require_masks: bool = False) -> Iterator[Tuple[str, object]]:
  """Yields (file, ScanSet) for each readable file (masks optional unless require_masks); for
  each other file calls on_error(file, one-line message) and goes on (batch runs over a
  folder), or raises the InputError with `stop_on_error` (a single input file)."""
  for path in files:
    try:
      scans = load_file(path, require_masks, max_side, volume_options)
    except Exception as e:  # any per-file failure: a failed row, and on to the next file
      if stop_on_error:
        raise
      report_failure(on_error, path, e)
      continue
    yield path, scans


def read_scaled(files: Sequence[str], on_error: Callable[[str, str], None], data_cfg, option,
                stop_on_error: bool = False, require_masks: bool = False) -> List[Tuple]:
  """(ScanSet, scale) of each readable file of `files` (read_files), the scale as predict finds
  it (resolve_scale with --pixel_um `option`; for a .mat or an .npz with scale_mm, which predict
  reads as volumes, volumes.file_scale). A file that cannot be read or whose own scale
  disagrees with --pixel_um stops the run with `stop_on_error` (a single input file) and is
  on_error's otherwise. data_cfg: the workdir's data settings (pixel_um, max_image_side)."""
  max_side = int(data_cfg.max_image_side)
  sets, default_row_um = [], float(data_cfg.pixel_um)
  for path, scans in read_files(files, on_error, max_side, stop_on_error,
                                require_masks=require_masks):
    try:
      own = volumes.file_scale(path, max_side) if scans.volume is None else None
      sets.append((scans, resolve_scale(scans, option, default_row_um, own)))
    except Exception as e:  # noqa: BLE001  (as read_files: any per-file failure)
      if stop_on_error:
        raise
      report_failure(on_error, path, e)
  return sets


def report_failure(on_error: Callable[[str, str], None], path: str, e: BaseException) -> None:
  """A file of a folder run failed: on_error(file, one-line message) and the console line."""
  message = file_failure(path, e)
  on_error(path, message)
  print(f"failed: {message}")


def file_failure(path: str, e: BaseException) -> str:
  """One line naming the user's file and what went wrong with it, for any exception."""
  if isinstance(e, InputError):
    return one_line(e)
  if isinstance(e, OSError):
    return one_line(f"{path}: {e.strerror or e}")
  return one_line(f"{path}: {type(e).__name__}: {e}")[:400]


def parse_pixel_um(text):
  """--pixel_um=ROW[,COL] (um per row, and per column) -> (row, col or None), or None."""
  if not text:
    return None
  try:
    values = [float(v) for v in str(text).split(",")]
  except ValueError:
    values = []
  if len(values) not in (1, 2) or not all(np.isfinite(v) and v > 0 for v in values):
    raise InputError(f"--pixel_um={text}: expected ROW or ROW,COL, positive numbers of um per "
                     "pixel row (and column)")
  return values[0], (values[1] if len(values) == 2 else None)


DEFAULT_ROW_SOURCE = "default (data.pixel_um)"     # the model config's row size, assumed


def resolve_scale(scans, option, default_row_um: float, own=None) -> Dict:
  """The pixel size of one input file and where it comes from: the file's own (a --pixel_um
  that disagrees is refused), --pixel_um, or the default (the model config's data.pixel_um
  for B-scans, Duke DME for volumes without one). It converts units only. own: (scale_mm,
  source) of a file that predict reads as a volume but the caller read as B-scans
  (volumes.file_scale); otherwise scans.volume's, or for B-scans taken from a volume (a
  scanner file's annotated ones) scans.volume_scale. A volume given --pixel_um gets it as its
  scale (scans.volume is replaced)."""
  vol = scans.volume
  if own is None and vol is not None:
    own = (vol.scale_mm, vol.scale_source)
  elif own is None:
    own = scans.volume_scale                # a volume's annotated B-scans (eval)
  if own is not None and own[1] == "file":
    row, col = own[0][1] * 1e3, own[0][2] * 1e3
    if option and (not np.isclose(option[0], row, rtol=1e-6) or
                   (option[1] is not None and not np.isclose(option[1], col, rtol=1e-6))):
      raise InputError(f"--pixel_um={','.join(f'{v:g}' for v in option if v)}: {scans.source} "
                       f"has its own scale ({row:.4g} um per row, {col:.4g} um per column) and "
                       "they disagree")
    return {"row_um": row, "col_um": col, "source": "file"}
  if option:
    col = option[1] if option[1] is not None or own is None else own[0][2] * 1e3
    if vol is not None:
      notes = [n for n in vol.notes if not n.startswith("scale")]
      scans.volume = dataclasses.replace(vol, scale_mm=(vol.scale_mm[0], option[0] / 1e3,
                                                        col / 1e3), scale_source="--pixel_um",
                                         notes=notes + ["scale per row and column from --pixel_um"])
    return {"row_um": option[0], "col_um": col, "source": "--pixel_um"}
  if own is not None:
    return {"row_um": own[0][1] * 1e3, "col_um": own[0][2] * 1e3, "source": own[1]}
  return {"row_um": default_row_um, "col_um": None, "source": DEFAULT_ROW_SOURCE}


def scale_record(scale: Dict) -> Dict:
  """A resolve_scale result as the JSON outputs record it: 11.819, not 11.818999999999999."""
  return {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in scale.items()}


def scale_text(scale: Dict) -> str:
  """A resolve_scale result in words, for titles and the console: the sizes, then whether they
  were read (from the file, from --pixel_um) or assumed (a default)."""
  col = "" if scale["col_um"] is None else f", {scale['col_um']:.4g} um per column"
  source = scale["source"]
  how = (f"assumed: {source}" if source.startswith("default") else
         "from the file" if source == "file" else f"from {source}")
  return f"{scale['row_um']:.4g} um per row{col}, {how}"
