"""OCT volumes with their physical scale and laterality: scanner files (through eyepy), Duke
.mat volumes and .npz volumes.

A Volume holds N B-scans of one eye, ordered as eyepy orders them: B-scan 0 is the bottom-most
(inferior) one on the fundus image, later B-scans lie further up (superior). Columns run left to
right on the fundus image, so for a right eye (OD) the nasal side is at high columns and for a
left eye (OS) at low columns.

Scale is (between B-scans, per row, per column) in mm, eyepy's (z, y, x) order. Where the file
has no scale, the defaults below apply, and the Volume says so in `notes`:

* SPECTRALIS_ROW_MM: 3.87 um per row (Heidelberg Spectralis axial pixel size).
* DUKE_DME_SCALE_MM: the Duke DME volumes of Chiu et al. 2015 (61 B-scans of 496 x 768). The
  spacing varies per eye (about 11.1-11.6 um per column and 118-128 um between B-scans); we
  use eyepy's `import_dukechiu2_mat` constants, 11.33 um and 123 um, which its source gives as
  the middle of the paper's ranges (the paper's own text could not be read from this
  machine). Stacked annotated Duke B-scans (an .npz with `bscan_index`) sit at
  bscan_index * 0.123 mm, so the 11 annotated B-scans are not evenly spaced.

Boundary names: our 8 boundaries (ILM, NFL/GCL, IPL/INL, INL/OPL, OPL/ONL, ISM/ISE, OS/RPE, BM)
are stored in .eye files and read from HEYEX files under the Heidelberg/eyepy names of
HEYEX_NAMES. eyepy's names are the Heidelberg segmentation lines, each the outer (lower) edge of
the layer it is named after: RNFL = RNFL/GCL, IPL = IPL/INL, INL = INL/OPL, OPL = OPL/ONL;
PR1 = the ellipsoid zone line (eyepy also calls it EZ), which our ISM/ISE boundary (top of the
ellipsoid zone) follows; RPE = the inner edge of the RPE band, which is our OS/RPE boundary
(Heidelberg's RPE layer runs from the RPE line to BM, as our class 7 does); BM = Bruch's
membrane. Heidelberg's GCL (GCL/IPL), ELM and PR2 (interdigitation zone) lines have no
counterpart among our 8 boundaries and are not written.
"""

import contextlib
import dataclasses
import glob
import logging
import os
from typing import List, Optional, Tuple

import numpy as np

from octseg_jax.data import duke
from octseg_jax.data.scans import SPECTRALIS_ROW_UM, ScanSet, bscan_name, to_uint8_images
from octseg_jax.errors import InputError, fail, library_reason
from octseg_jax.anatomy import IGNORE

SPECTRALIS_ROW_MM = SPECTRALIS_ROW_UM / 1000
DUKE_DME_SCALE_MM = (0.123, SPECTRALIS_ROW_MM, 0.01133)
DUKE_SCALE_TEXT = ("scale assumed: {:.4g} um between B-scans, {:.4g} um per row, {:.4g} um per "
                   "column".format(*(1e3 * v for v in DUKE_DME_SCALE_MM)))
DEFAULT_SCALE_SOURCE = "default (Duke DME)"
HEYEX_NAMES = ("ILM", "RNFL", "IPL", "INL", "OPL", "PR1", "RPE", "BM")
SCANNER_SUFFIXES = (".vol", ".e2e", ".eye", ".xml")   # .xml: a HEYEX XML export's file
LATERALITIES = ("OD", "OS")
LATERALITY_ASSUMED = "assumed"   # laterality_source where neither the file nor an option gave one


@dataclasses.dataclass
class Volume:
  """One eye's B-scans with geometry.

  images: uint8 [N, H, W]. masks: uint8 [N, H, W] (IGNORE where not annotated) or None.
  annotated: bool [N], the B-scans that carry annotations. positions_mm: float [N], position
  of each B-scan along the slow axis, increasing towards superior. scale_mm: (between B-scans,
  per row, per column). laterality: 'OD' or 'OS'. names: one name per B-scan. notes: what was
  assumed rather than read (defaults), for the output. scale_source: 'file', or what the scale
  is when the file gives none ('default (Duke DME)', or '--pixel_um' once that option set it).
  laterality_source: 'file', '--laterality', or LATERALITY_ASSUMED (the file has none and no
  option gave it: nasal and temporal may be swapped, which every output says).
  placement: for a scanner file read through eyepy, its fundus image and where each B-scan lies
  on it ({'localizer': eyepy EyeEnface, 'bscan_meta': eyepy's per-B-scan meta [N],
  'transform': eyepy's map of the volume onto the fundus}), which the .eye output keeps; None
  for other files. fluid: uint8 [N, H, W], the grader's fluid (1) where the file annotates it
  (ScanSet.fluid), else None.
  """
  images: np.ndarray
  masks: Optional[np.ndarray]
  annotated: np.ndarray
  positions_mm: np.ndarray
  scale_mm: Tuple[float, float, float]
  laterality: str
  names: List[str]
  source: str
  notes: List[str] = dataclasses.field(default_factory=list)
  scale_source: str = "file"
  laterality_source: str = "file"
  placement: Optional[dict] = None
  fluid: Optional[np.ndarray] = None

  def __len__(self) -> int:
    return len(self.images)

  @property
  def stem(self) -> str:
    return os.path.splitext(os.path.basename(self.source.rstrip("/")))[0]

  def to_scanset(self, annotated_only: bool = False) -> ScanSet:
    """All B-scans as a ScanSet carrying this Volume (or only the annotated ones, without it
    but with its scale: volume_scale)."""
    subjects = np.full(len(self), duke.subject_number(self.stem) or 0)
    scans = ScanSet(self.images, self.masks, subjects, list(self.names), self.source,
                    fluid=self.fluid)
    if not annotated_only:
      scans.volume = self
      return scans
    if self.masks is None or not self.annotated.any():
      raise fail(self.source, "has no layer annotations (expected the 8 boundaries "
                 f"{', '.join(HEYEX_NAMES)})")
    scans.volume_scale = (self.scale_mm, self.scale_source)     # the volume is not carried
    return scans.subset(np.nonzero(self.annotated)[0])


def is_heyex_xml_folder(path: str) -> bool:
  return os.path.isdir(path) and bool(glob.glob(os.path.join(path, "*.xml")))


def is_volume(path: str, force: bool = False) -> bool:
  """Scanner files, HEYEX XML folders and .mat files always; an .npz with `scale_mm`, or any
  .npz when `force` (--volume)."""
  lower = path.lower()
  if lower.endswith(SCANNER_SUFFIXES + (".mat",)) or is_heyex_xml_folder(path):
    return True
  if lower.endswith(".npz") and os.path.isfile(path):
    if force:
      return True
    try:
      with np.load(path, allow_pickle=False) as data:
        return "scale_mm" in getattr(data, "files", ())
    except Exception:  # damaged file: the .npz reader reports it
      return False
  return False


def volume_hint(path: str) -> Optional[str]:
  """For an .npz read as separate B-scans: a hint when it holds `bscan_index`, the positions of
  B-scans of one volume (as the Duke subject files do), that --volume would map them."""
  if not path.lower().endswith(".npz"):
    return None
  try:
    with np.load(path, allow_pickle=False) as data:
      if "bscan_index" not in getattr(data, "files", ()):
        return None
  except Exception:  # noqa: BLE001  (it was read a moment ago; a hint is not worth a failure)
    return None
  return (f"note: {path} holds bscan_index (B-scans of one volume): add --volume for en-face "
          "thickness maps and the ETDRS table")


def read_volume(path: str, laterality: Optional[str] = None,
                max_side: int = duke.MAX_IMAGE_SIDE) -> Volume:
  """Reads a volume; `laterality` ('OD'/'OS') is used where the file has none."""
  if laterality is not None and laterality not in LATERALITIES:
    raise fail("--laterality", f"expected OD or OS, got {laterality!r}")
  lower = path.rstrip("/").lower()
  if lower.endswith(".npz"):
    return read_npz_volume(path, laterality, max_side)
  if lower.endswith(".mat"):
    return read_duke_mat_volume(path, laterality)
  return read_eyepy_volume(path, laterality)


LATERALITY_CODES = {"OD": "OD", "OS": "OS", "R": "OD", "L": "OS", "RIGHT": "OD", "LEFT": "OS",
                    "82": "OD", "76": "OS"}   # 82 / 76: ASCII 'R' / 'L' (.e2e through eyepy)


def read_laterality(value) -> Optional[str]:
  """A file's laterality in any form eyepy gives it (OD/OS, R/L, right/left, the ASCII codes
  82/76 as numbers, text or bytes, an enum with such a name or value) -> 'OD' / 'OS'; None
  when the file has none; ValueError for a value that is none of these."""
  if value is None:
    return None
  for candidate in (value, getattr(value, "name", None), getattr(value, "value", None)):
    if isinstance(candidate, bytes):
      candidate = candidate.decode("ascii", "replace")
    if isinstance(candidate, (int, np.integer)) and not isinstance(candidate, bool):
      candidate = str(int(candidate))
    if isinstance(candidate, str):
      key = candidate.strip().upper().split(".")[-1]
      if key in LATERALITY_CODES:
        return LATERALITY_CODES[key]
      if key in ("", "NONE", "UNKNOWN"):
        return None
  raise ValueError(f"laterality {value!r} is not one of OD/OS, R/L, right/left or 82/76")


def _laterality(found, given: Optional[str], notes: list, path: str = "") -> Tuple[str, str]:
  """(laterality, where it came from: 'file', '--laterality' or LATERALITY_ASSUMED)."""
  try:
    found = read_laterality(found) or ""
  except ValueError as e:
    if given is None:
      raise fail(path, f"{e}: set --laterality=OD or OS") from None
    notes.append(f"{e}; laterality {given} from --laterality")
    return given, "--laterality"
  if found in LATERALITIES:
    if given is not None and given != found:   # as a --pixel_um that disagrees with the file
      raise InputError(f"--laterality={given}: {path} has its own laterality ({found}) and "
                       "they disagree")
    return found, "file"
  if given is not None:
    notes.append(f"laterality {given} from --laterality")
    return given, "--laterality"
  notes.append("laterality OD assumed (the file has none; set --laterality)")
  return "OD", LATERALITY_ASSUMED


@contextlib.contextmanager
def eyepy_messages(messages: list):
  """Collects what eyepy logs (its warnings about a file) into `messages` instead of letting
  them reach the console as log lines: the reader reports them as the volume's notes."""
  class Collect(logging.Handler):
    def emit(self, record):
      text = record.getMessage()
      about = (" (about the file's own layer annotations: the predictions do not use them; "
               "where they can be read, eval scores against them and predict draws them)"
               if "layer" in text.lower() else "")
      messages.append(f"eyepy: {text}{about}")
  logger = logging.getLogger("eyepy")
  handler, propagate = Collect(logging.WARNING), logger.propagate
  logger.addHandler(handler)
  logger.propagate = False
  try:
    yield messages
  finally:
    logger.removeHandler(handler)
    logger.propagate = propagate


def _import_eyepy(path: str):
  import eyepy  # Imported here: only scanner files need it.
  lower = path.rstrip("/").lower()
  if lower.endswith(".eye"):
    return eyepy.EyeVolume.load(path)
  if lower.endswith(".vol"):
    return eyepy.import_heyex_vol(path)
  if lower.endswith(".e2e"):
    return eyepy.import_heyex_e2e(path)
  if lower.endswith(".xml") or is_heyex_xml_folder(path):
    return eyepy.import_heyex_xml(path)
  raise fail(path, f"not a scanner file ({', '.join(SCANNER_SUFFIXES)} or a HEYEX XML folder)")


def read_eyepy_volume(path: str, laterality: Optional[str] = None) -> Volume:
  """HEYEX .vol / XML folder / .e2e and eyepy .eye through eyepy, with the annotated boundaries
  (eyepy's layers) as masks."""
  if not os.path.exists(path):
    raise fail(path, "no such file or folder")
  notes = []
  try:
    with eyepy_messages(notes):
      ev = _import_eyepy(path)
      images = np.asarray(ev.data)
      scale, unit = tuple(float(s) for s in ev.scale), ev.scale_unit
      bscan_meta = ev.meta["bscan_meta"]
      boundary_rows = {name: np.asarray(layer.data, np.float64)   # eyepy calls them layers
                       for name, layer in ev.layers.items()}
      found_laterality = ev.meta.get("laterality") if hasattr(ev.meta, "get") else None
      placement = {"localizer": ev.localizer, "bscan_meta": list(bscan_meta),
                   "transform": ev.localizer_transform}
  except Exception as e:  # eyepy raises many types on damaged or foreign files
    if type(e).__name__ == "InputError":
      raise
    raise fail(path, f"eyepy could not read it ({library_reason(e)})") from None
  images = to_uint8_images(images, path)
  if unit != "mm":
    notes.append(f"scale unit {unit!r} in the file: default scale used")
    scale = (DUKE_DME_SCALE_MM[0], SPECTRALIS_ROW_MM, DUKE_DME_SCALE_MM[2])
  source = "file" if unit == "mm" else DEFAULT_SCALE_SOURCE
  positions = _positions_from_meta(bscan_meta, len(images), scale[0])
  masks, annotated = _masks_from_boundary_rows(boundary_rows, images.shape)
  stem = os.path.splitext(os.path.basename(path.rstrip('/')))[0]
  names = [bscan_name(stem, i) for i in range(len(images))]
  side, side_source = _laterality(found_laterality, laterality, notes, path)
  return Volume(images, masks, annotated, positions, scale, side, names, path, notes, source,
                side_source, placement)


def _positions_from_meta(bscan_meta, n: int, scale_z: float) -> np.ndarray:
  """Slow-axis B-scan positions in mm, increasing superior. eyepy gives (x, y) start points on
  the fundus image with y growing downwards; without mm positions the B-scans are taken evenly
  spaced with B-scan 0 inferior."""
  try:
    if len(bscan_meta) == n and all(m["pos_unit"] == "mm" for m in bscan_meta):
      y = np.array([(m["start_pos"][1] + m["end_pos"][1]) / 2 for m in bscan_meta], float)
      if np.ptp(y) > 0 or n == 1:
        return y[0] - y
  except (KeyError, TypeError, IndexError):
    pass
  return np.arange(n) * scale_z


def _masks_from_boundary_rows(rows: dict, shape) -> Tuple[Optional[np.ndarray], np.ndarray]:
  """Masks [N, H, W] from the rows [N, W] of the 8 HEYEX_NAMES boundaries (eyepy's layer
  annotations); None when any is missing."""
  n, h, w = shape
  if not all(name in rows and rows[name].shape == (n, w) for name in HEYEX_NAMES):
    return None, np.zeros(n, bool)
  bounds = np.stack([rows[name] for name in HEYEX_NAMES], axis=1)         # [N, 8, W]
  annotated = (np.isfinite(bounds[:, 0]) & np.isfinite(bounds[:, 7])).any(axis=-1)
  masks = np.stack([duke.boundaries_to_mask(b, h) if a else np.full((h, w), IGNORE, np.uint8)
                    for b, a in zip(bounds, annotated)])
  return masks, annotated


def npz_scale(path: str, scale) -> Tuple[Tuple[float, float, float], str]:
  """(scale_mm, source) of a volume .npz from its `scale_mm` field (None: Duke DME defaults)."""
  if scale is None:
    return DUKE_DME_SCALE_MM, DEFAULT_SCALE_SOURCE
  if not (np.issubdtype(scale.dtype, np.integer) or np.issubdtype(scale.dtype, np.floating)):
    raise fail(path, f"scale_mm has dtype {scale.dtype}, expected 3 numbers (between B-scans, "
               "per row, per column, mm)")
  scale = np.asarray(scale, np.float64).ravel()
  if scale.shape != (3,) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
    raise fail(path, f"scale_mm must be 3 positive numbers (between B-scans, per row, per "
               f"column, mm), got {scale.tolist()}")
  return tuple(float(s) for s in scale), "file"


def file_scale(path: str, max_side: int = duke.MAX_IMAGE_SIDE):
  """For a file read as separate B-scans that predict reads as a volume without --volume (a
  .mat, an .npz with scale_mm: is_volume), the (scale_mm, source) read_volume would give it,
  reading only its scale; None for other files."""
  lower = path.lower()
  if lower.endswith(".mat"):
    return DUKE_DME_SCALE_MM, DEFAULT_SCALE_SOURCE
  if lower.endswith(".npz"):
    scale = duke.read_npz_fields(path, ("scale_mm",), max_side).get("scale_mm")
    return None if scale is None else npz_scale(path, scale)
  return None


def read_npz_volume(path: str, laterality: Optional[str] = None,
                    max_side: int = duke.MAX_IMAGE_SIDE) -> Volume:
  """An .npz with `images` [N, H, W], optional `masks`, `scale_mm` (3 numbers) and
  `bscan_index` (B-scan positions in units of the between-B-scan spacing)."""
  scans = duke.load_npz(path, max_side=max_side)
  fields = duke.read_npz_fields(path, ("scale_mm", "bscan_index"), max_side)
  scale, source = npz_scale(path, fields.get("scale_mm"))
  index = fields.get("bscan_index")
  notes = [] if source == "file" else [
      f"{DUKE_SCALE_TEXT} (Duke DME defaults; the file has no scale_mm)"]
  n = len(scans)
  if index is not None and np.asarray(index).shape == (n,):
    index = np.asarray(index, np.float64)
    if len(np.unique(index)) != n:
      raise fail(path, "bscan_index repeats a B-scan position")
    positions = index * scale[0]
  else:
    positions = np.arange(n) * scale[0]
  masks = scans.masks
  annotated = np.zeros(n, bool) if masks is None else (masks != IGNORE).any(axis=(1, 2))
  side, side_source = _laterality(None, laterality, notes)
  return Volume(scans.images, masks, annotated, positions, scale, side, scans.names, path,
                notes, source, side_source, fluid=scans.fluid)


def read_duke_mat_volume(path: str, laterality: Optional[str] = None, grader: int = 1) -> Volume:
  """A whole Duke DME Subject_XX.mat volume (all B-scans, masks on the annotated ones).

  Reads with scipy and the mask rules of octseg_jax.data.duke rather than eyepy's
  import_dukechiu2_mat, which needs every automatic-segmentation key of the original release;
  the scale is the same (DUKE_DME_SCALE_MM).
  """
  scans = duke.load_mat(path, grader, annotated_only=False)    # every B-scan of the volume
  images, n = scans.images, len(scans)                          # [S, H, W]
  masks = scans.masks if scans.masks is not None else np.full(images.shape, IGNORE, np.uint8)
  annotated = (masks != IGNORE).any(axis=(1, 2))                # [S]
  notes = [f"{DUKE_SCALE_TEXT} (Duke DME, Chiu et al. 2015)"]
  names = list(scans.names)
  side, side_source = _laterality(None, laterality, notes)
  return Volume(images, masks, annotated, np.arange(n) * DUKE_DME_SCALE_MM[0],
                DUKE_DME_SCALE_MM, side, names, path, notes, DEFAULT_SCALE_SOURCE, side_source,
                fluid=scans.fluid)
