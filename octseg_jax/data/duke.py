"""Duke DME (Chiu et al. 2015): the per-subject .npz format and the original Subject_XX.mat.

The .npz format (see ../shared/data/duke_dme_chiu2015/README.md): `images`, `masks` uint8
[N, H, W] (0 background, 1..7 layers, 255 ignore), `subject`, `bscan_index`, `fluid`.

The original release: MATLAB v5 `images` uint8 [496, 768, 61], `manualLayers1/2` float
[8, 768, 61] (boundary row per column; NaN or 0 where not annotated), `manualFluid1/2`
[496, 768, 61]. Layer k lies between boundaries k and k+1; the conversion follows the .npz
README: floor the rows, a missing boundary inside an annotated column takes the one above
(zero thickness), and fluid runs get the layer around them when that is one layer, else 255.
"""

import glob
import os
import re
import struct
import zlib

import numpy as np

from octseg_jax.data.scans import (MAX_IMAGE_SIDE, ScanSet, bscan_name, check_fluid,
                                   check_image_side, check_index_field, check_masks,
                                   label_map, to_uint8_images)
from octseg_jax.errors import InputError, fail, folder_problem, library_reason
from octseg_jax.anatomy import IGNORE, NUM_BOUNDARIES


NPZ_FIELDS = ("images", "masks", "subject", "bscan_index", "fluid")   # the fields read; others ignored
IMAGE_FIELDS = ("images", "masks", "fluid")      # [N,] H, W[, C]: sides checked before reading
MAX_SCANS_PER_FILE = 1024
MAX_SMALL_FIELD = 1 << 20                        # elements of any other field


# The model input of a Duke B-scan under the Duke configs (the 224-row retina band, columns
# padded to a multiple of 16): of the commonest scan (542 columns, subjects 5, 6 and 8), the
# lever table's GFLOP per B-scan; of a training batch, which is padded to the widest scan (548
# columns, subject 4), the shape that split.json records and training benchmarks time.
MODEL_INPUT = (224, 544)
TRAINING_INPUT = (224, 560)

def _npz_header(data, name: str):
  """(shape, dtype) declared by the .npy header of member `name` of an open NpzFile, read
  without inflating its data."""
  with data.zip.open(name + ".npy") as f:
    version = np.lib.format.read_magic(f)
    reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
              else np.lib.format.read_array_header_2_0)
    shape, _, dtype = reader(f)
  return shape, dtype


def check_npz_shapes(data, path: str, fields, max_side: int = MAX_IMAGE_SIDE) -> None:
  """Refuses, before any data is inflated, members whose declared shapes exceed the limits:
  image sides above max_side, more than MAX_SCANS_PER_FILE scans, or other fields larger
  than MAX_SMALL_FIELD elements; and members that hold Python objects (pickles)."""
  for name in fields:
    if name not in data.files:
      continue
    shape, dtype = _npz_header(data, name)
    if dtype.hasobject:
      raise fail(path, f"'{name}' holds Python objects (a pickle), expected numbers")
    if name in IMAGE_FIELDS:
      colour = len(shape) >= 3 and shape[-1] in (3, 4)
      sides = shape[-3:-1] if colour else shape[-2:]
      if len(sides) == 2:                # other shapes: the field's own check says what is wrong
        check_image_side(*sides, path, max_side)
      if int(np.prod(shape[:-3] if colour else shape[:-2])) > MAX_SCANS_PER_FILE:
        raise fail(path, f"'{name}' declares more than {MAX_SCANS_PER_FILE} scans (not read)")
    elif int(np.prod(shape)) > MAX_SMALL_FIELD:
      raise fail(path, f"'{name}' declares {int(np.prod(shape))} values (not read)")


def read_npz_fields(path: str, fields=NPZ_FIELDS, max_side: int = MAX_IMAGE_SIDE) -> dict:
  """The arrays of `fields` in an .npz archive, their declared shapes checked first; a damaged
  file raises an InputError."""
  try:
    with open(path, "rb") as f:
      magic = f.read(6)
  except FileNotFoundError:
    raise fail(path, "no such file") from None
  if magic == b"\x93NUMPY":
    raise fail(path, "is a single .npy array, not an .npz archive (save with np.savez(path, "
               "images=...))")
  if magic[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):     # a zip's first entry, an empty zip
    raise fail(path, "not an .npz archive (no zip header; save with np.savez(path, images=...))")
  try:
    with np.load(path, allow_pickle=False) as data:
      check_npz_shapes(data, path, fields, max_side)
      return {k: data[k] for k in fields if k in data.files}
  except InputError:
    raise
  except Exception as e:  # zip, zlib, pickle and format errors of a damaged file
    raise fail(path, f"not a readable .npz file ({library_reason(e)})") from None


def load_npz(path: str, require_masks: bool = False,
             max_side: int = MAX_IMAGE_SIDE) -> ScanSet:
  """Reads one file of the shared .npz format (masks optional unless `require_masks`).

  Every field read is checked: `images` (required) by to_uint8_images, `masks` against the
  images, `subject` and `bscan_index` (optional, one integer per scan or a scalar subject).
  """
  arrays = read_npz_fields(path, max_side=max_side)
  if "images" not in arrays:
    raise fail(path, "no 'images' array")
  images = to_uint8_images(arrays["images"], path, max_side)
  masks = arrays.get("masks")
  if masks is None and require_masks:
    raise fail(path, "no 'masks' array, and this mode needs masks")
  if masks is not None:
    masks = check_masks(masks, images, path)
  fluid = check_fluid(arrays["fluid"], images, path) if "fluid" in arrays else None
  stem = os.path.splitext(os.path.basename(path))[0]
  if "subject" in arrays:
    subjects = check_index_field(arrays["subject"], len(images), path, "subject")
  else:
    subjects = np.full(len(images), subject_number(stem) or 0)
  if "bscan_index" in arrays:
    index = check_index_field(arrays["bscan_index"], len(images), path, "bscan_index")
    names = [bscan_name(stem, i) for i in index]
  else:
    names = [f"{stem}_{i:03d}" for i in range(len(images))]
  return ScanSet(images, masks, subjects, names, path, fluid=fluid)


def boundaries_to_mask(bounds: np.ndarray, height: int) -> np.ndarray:
  """Grader boundaries [8, W] (float rows, NaN/0 = missing) -> uint8 mask [H, W].

  A column whose first boundary (ILM) or last (BM) is missing is unannotated: all IGNORE.
  A missing inner boundary takes the boundary above it (a zero-thickness layer).
  """
  b = np.array(bounds, np.float64)
  b[~np.isfinite(b) | (b <= 0)] = np.nan
  annotated = np.isfinite(b[0]) & np.isfinite(b[-1])
  for k in range(1, NUM_BOUNDARIES):                      # fill missing from the one above
    b[k] = np.where(np.isnan(b[k]), b[k - 1], b[k])
  mask = label_map(np.nan_to_num(b, nan=0.0), height)
  mask[:, ~annotated] = IGNORE
  return mask


def resolve_fluid(mask: np.ndarray, fluid: np.ndarray) -> np.ndarray:
  """Per column, each run of fluid pixels takes the label directly above and below it when
  the two agree, else IGNORE (a boundary passes through the fluid at an unknown row)."""
  out = mask.copy()
  height = mask.shape[0]
  for col in np.nonzero(fluid.any(axis=0))[0]:
    f = fluid[:, col].astype(bool)
    edges = np.diff(np.concatenate([[0], f.astype(np.int8), [0]]))
    for start, stop in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]):
      above = mask[start - 1, col] if start > 0 else 0
      below = mask[stop, col] if stop < height else 0
      out[start:stop, col] = above if above == below else IGNORE
  return out


MAT_HEADER_BYTES = 512        # of a variable's (inflated) start: enough for flags, dims, name


def _mat_subelement(body: bytes, pos: int, endian: str):
  """(type, data, next position) of the MAT v5 sub-element at `pos` (small or full format)."""
  kind, size = struct.unpack_from(endian + "II", body, pos)
  if kind >> 16:                                   # small format: size in the upper half
    return kind & 0xFFFF, body[pos + 4:pos + 4 + (kind >> 16)], pos + 8
  return kind, body[pos + 8:pos + 8 + size], pos + 8 + size + (-size % 8)


def _mat_matrix_header(body: bytes, endian: str):
  """(name, shape) from the start of a miMATRIX element (its tag included)."""
  pos = 8                                                            # after the matrix tag
  _, _, pos = _mat_subelement(body, pos, endian)                     # array flags
  _, dims, pos = _mat_subelement(body, pos, endian)                  # dimensions (int32)
  _, name, _ = _mat_subelement(body, pos, endian)
  shape = struct.unpack(endian + f"{len(dims) // 4}i", dims)
  return name.decode("latin-1"), tuple(shape)


def mat_variable_shapes(path: str):
  """[(name, shape)] of the variables of a MATLAB v5 file, read from each variable's header
  alone: a compressed variable is inflated only up to MAT_HEADER_BYTES, so a file cannot make
  this cost more memory than its headers (scipy.io.whosmat inflates whole variables)."""
  out = []
  with open(path, "rb") as f:
    head = f.read(128)
    if len(head) < 128 or head[126:128] not in (b"IM", b"MI"):
      raise ValueError("no MATLAB v5 header")
    endian = "<" if head[126:128] == b"IM" else ">"
    if struct.unpack(endian + "H", head[124:126])[0] != 0x0100:
      raise ValueError("not version 5 (MATLAB v7.3 files are HDF5: save with -v7)")
    while len(tag := f.read(8)) == 8:
      kind, size = struct.unpack(endian + "II", tag)
      start = f.tell()
      if kind == 15:                                                  # miCOMPRESSED
        inflate, body = zlib.decompressobj(), b""
        while len(body) < MAT_HEADER_BYTES and f.tell() < start + size and not inflate.eof:
          body += inflate.decompress(inflate.unconsumed_tail or
                                     f.read(min(4096, start + size - f.tell())),
                                     MAT_HEADER_BYTES - len(body))
      else:
        body = tag + f.read(min(size, MAT_HEADER_BYTES))
      if struct.unpack_from(endian + "I", body, 0)[0] == 14:         # miMATRIX
        out.append(_mat_matrix_header(body, endian))
      f.seek(start + size + (0 if kind == 15 else -size % 8))
  return out


def check_mat_shapes(path: str, declared, max_side: int) -> None:
  """Refuses, before any data is inflated, variables whose declared shapes exceed the limits:
  declared = mat_variable_shapes' (name, shape) of the variables that will be read."""
  for name, shape in declared:
    if name == "images" or name.startswith("manualFluid"):
      if len(shape) >= 2:
        check_image_side(shape[0], shape[1], path, max_side)
      if len(shape) >= 3 and int(np.prod(shape[2:])) > MAX_SCANS_PER_FILE:
        raise fail(path, f"'{name}' declares more than {MAX_SCANS_PER_FILE} scans (not read)")
    elif int(np.prod(shape)) > NUM_BOUNDARIES * max_side * MAX_SCANS_PER_FILE:
      raise fail(path, f"'{name}' declares {int(np.prod(shape))} values (not read)")


def _read_mat(path: str, names, max_side: int = MAX_IMAGE_SIDE) -> dict:
  """The variables `names` of a MATLAB v5 file (others are not read), their declared shapes
  checked first (check_mat_shapes); '__variables__' lists every variable the file holds."""
  import scipy.io  # Only .mat reading needs it at import time.
  try:
    every = mat_variable_shapes(path)
    declared = [v for v in every if v[0] in names]
    check_mat_shapes(path, declared, max_side)
    data = scipy.io.loadmat(path, variable_names=[v[0] for v in declared])
  except FileNotFoundError:
    raise fail(path, "no such file") from None
  except InputError:
    raise
  except Exception as e:  # the header parser and scipy raise many types for damaged files
    raise fail(path, f"not a readable MATLAB v5 file ({library_reason(e)})") from None
  data["__variables__"] = sorted(v[0] for v in every)    # for messages: what the file holds
  return data


def _numeric_field(data: dict, key: str, path: str) -> np.ndarray:
  """data[key] as a real numeric array; cells, structs, strings and complex are refused."""
  value = np.asarray(data[key])
  if value.dtype == bool or not np.issubdtype(value.dtype, np.number) or \
     np.issubdtype(value.dtype, np.complexfloating):
    raise fail(path, f"field '{key}' has MATLAB type {value.dtype}, expected a numeric array")
  return value


def _volume(data: dict, path: str, max_side: int) -> np.ndarray:
  """The `images` field [H, W, S] (or [H, W]) as uint8 B-scans [S, H, W]."""
  if "images" not in data:
    found = data["__variables__"]
    raise fail(path, f"missing ['images'] (keys: {found})")
  vol = _numeric_field(data, "images", path)
  if vol.ndim == 2:
    vol = vol[..., None]
  if vol.ndim != 3:
    raise fail(path, f"field 'images' has shape {vol.shape}, expected [H, W, S]")
  return to_uint8_images(np.moveaxis(vol, -1, 0), path, max_side)


def load_mat(path: str, grader: int = 1, unannotated: str = "crop",
             annotated_only: bool = True, max_side: int = MAX_IMAGE_SIDE) -> ScanSet:
  """Reads an original Duke Subject_XX.mat.

  annotated_only: True (training, eval) keeps the B-scans that `grader` annotated, with masks;
    False (prediction) keeps every B-scan of the volume, with masks where the file has the
    grader's boundaries (unannotated scans and columns IGNORE) and none otherwise.
  unannotated: with annotated_only, 'crop' keeps only the columns annotated in any scan of the
    volume (like the shared .npz files; columns inside that range but unannotated in one scan
    become IGNORE), or 'ignore' keeps all columns and marks unannotated ones IGNORE.
  """
  if grader not in (1, 2):
    raise fail(path, f"grader must be 1 or 2, got {grader}")
  if unannotated not in ("crop", "ignore"):
    raise ValueError(f"unannotated must be 'crop' or 'ignore', got {unannotated!r}")
  boundaries_key, fluid_key = f"manualLayers{grader}", f"manualFluid{grader}"
  data = _read_mat(path, ("images", boundaries_key, fluid_key), max_side)
  if annotated_only and boundaries_key not in data:
    found = data["__variables__"]
    missing = [k for k in ("images", boundaries_key) if k not in data]
    raise fail(path, f"missing {missing} (keys: {found})")
  images = _volume(data, path, max_side)                              # [S, H, W]
  stem = os.path.splitext(os.path.basename(path))[0]
  subject = subject_number(stem) or 0
  if boundaries_key not in data:
    names = [bscan_name(stem, s) for s in range(len(images))]
    return ScanSet(images, None, np.full(len(images), subject), names, path)
  masks, fluid = _grader_masks(data, boundaries_key, fluid_key, images.shape, path)
  labelled = (masks != IGNORE).any(axis=(1, 2))
  if annotated_only:
    if not labelled.any():
      raise fail(path, f"{boundaries_key} annotates no B-scan (the top boundary, ILM, or the "
                 "bottom one, BM, is missing in every column)")
    keep = np.nonzero(labelled)[0]
    images, masks = images[keep], masks[keep]
    fluid = None if fluid is None else fluid[keep]
    if unannotated == "crop":
      found = np.nonzero((masks != IGNORE).any(axis=(0, 1)))[0]
      cols = slice(found[0], found[-1] + 1)
      images, masks = images[..., cols], masks[..., cols]
      fluid = None if fluid is None else fluid[..., cols]
  else:
    keep = np.arange(len(images))
  names = [bscan_name(stem, s) for s in keep]
  return ScanSet(images, masks, np.full(len(images), subject), names, path, fluid=fluid)


def _grader_masks(data: dict, boundaries_key: str, fluid_key: str, shape, path: str):
  """(masks, fluid) uint8 [S, H, W] from the grader's boundaries [8, W, S] and fluid
  [H, W, S]; fluid is None when the file has no fluid annotation (not 'no fluid')."""
  n, height, width = shape
  bounds = _numeric_field(data, boundaries_key, path).astype(np.float64)
  if bounds.ndim == 2:
    bounds = bounds[..., None]
  if bounds.shape != (NUM_BOUNDARIES, width, n):
    raise fail(path, f"images [{height}, {width}, {n}] and {boundaries_key} "
               f"{list(bounds.shape)} do not match [H, W, S] and [8, W, S]")
  if fluid_key in data:
    fluid = _numeric_field(data, fluid_key, path)
    if fluid.ndim == 2:
      fluid = fluid[..., None]
    if fluid.shape != (height, width, n):
      raise fail(path, f"{fluid_key} has shape {list(fluid.shape)}, images [{height}, {width}, {n}]")
    fluid = np.nan_to_num(fluid.astype(np.float64)) > 0
  else:
    return np.stack([boundaries_to_mask(bounds[..., s], height) for s in range(n)]), None
  masks = np.stack([resolve_fluid(boundaries_to_mask(bounds[..., s], height), fluid[..., s])
                    for s in range(n)])
  return masks, np.moveaxis(fluid, -1, 0).astype(np.uint8)


def load_dir(path: str, subjects=None, grader: int = 1,
             max_side: int = MAX_IMAGE_SIDE) -> list:
  """All Duke files in a folder (subject_XX.npz and/or Subject_XX.mat), optionally only the
  listed subject numbers. Returns a list of ScanSets, one per file. `grader` (1 or 2) picks
  whose annotations of the original .mat files are read (the .npz files hold grader 1's)."""
  sets = []
  for f in subject_files(path, subjects):
    if f.endswith(".npz") and grader != 1:
      raise fail(f, f"holds grader 1's annotations only; --config.data.grader={grader} needs "
                 "the original Subject_XX.mat files")
    sets.append(load_npz(f, require_masks=True, max_side=max_side) if f.endswith(".npz")
                else load_mat(f, grader=grader, max_side=max_side))
  return sets


def subject_files(path: str, subjects=None, option: str = "--config.data.duke_dir") -> list:
  """The Duke files of a folder (subject_XX.npz and/or Subject_XX.mat), sorted, optionally only
  those whose name's last number is one of the listed subjects. `option` is what names the
  folder, for the message when it is missing."""
  problem = folder_problem(path)
  if problem:
    raise fail(path, f"{problem} (set {option})")
  files = sorted(glob.glob(os.path.join(path, "*.npz")) + glob.glob(os.path.join(path, "*.mat")))
  if not files:
    raise fail(path, "no .npz or .mat files in this folder")
  chosen = [f for f in files if not subjects or subject_number(f) in subjects]
  if not chosen:
    raise fail(path, f"no files for subjects {list(subjects)}")
  return chosen


def subject_number(path: str):
  """The subject a Duke file holds: the last number in its name, at most 9 digits of it (None
  without one)."""
  number = re.findall(r"\d+", os.path.basename(path))
  return int(number[-1][-9:]) if number else None
