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

import numpy as np

from octseg_jax.data.scans import ScanSet, check_masks, to_uint8_images
from octseg_jax.errors import fail
from octseg_jax.preprocessing import IGNORE


def load_npz(path: str, require_masks: bool = False) -> ScanSet:
  """Reads one file of the shared .npz format (masks optional unless `require_masks`)."""
  try:
    with np.load(path, allow_pickle=False) as data:
      if not hasattr(data, "files"):
        raise ValueError("a single .npy array, not an .npz archive")
      arrays = {k: data[k] for k in data.files}
  except FileNotFoundError:
    raise fail(path, "no such file") from None
  except Exception as e:  # zip, zlib, pickle and format errors of a damaged file
    raise fail(path, f"not a readable .npz file ({type(e).__name__}: {str(e)[:120]})") from None
  if "images" not in arrays:
    raise fail(path, f"no 'images' array (keys: {sorted(arrays)})")
  images = to_uint8_images(arrays["images"], path)
  masks = arrays.get("masks")
  if masks is None and require_masks:
    raise fail(path, "no 'masks' array, and this mode needs masks")
  if masks is not None:
    masks = check_masks(masks, images, path)
  stem = os.path.splitext(os.path.basename(path))[0]
  subjects = arrays.get("subject")
  if subjects is None or np.asarray(subjects).shape != (len(images),):
    number = re.findall(r"\d+", stem)
    subjects = np.full(len(images), int(number[-1]) if number else 0)
  index = arrays.get("bscan_index")
  if index is not None and np.asarray(index).shape == (len(images),):
    names = [f"{stem}_b{int(i):02d}" for i in index]
  else:
    names = [f"{stem}_{i:03d}" for i in range(len(images))]
  return ScanSet(images, masks, np.asarray(subjects, int), names, path)


def boundaries_to_mask(bounds: np.ndarray, height: int) -> np.ndarray:
  """Grader boundaries [8, W] (float rows, NaN/0 = missing) -> uint8 mask [H, W].

  A column whose first boundary (ILM) or last (BM) is missing is unannotated: all IGNORE.
  A missing inner boundary takes the boundary above it (a zero-thickness layer).
  """
  b = np.array(bounds, np.float64)
  b[~np.isfinite(b) | (b <= 0)] = np.nan
  annotated = np.isfinite(b[0]) & np.isfinite(b[-1])
  for k in range(1, 8):                                   # fill missing from the one above
    b[k] = np.where(np.isnan(b[k]), b[k - 1], b[k])
  fb = np.floor(np.nan_to_num(b, nan=0.0))
  rows = np.arange(height)[:, None]
  mask = np.zeros((height, b.shape[1]), np.uint8)
  for k in range(7):
    mask[(rows >= fb[k]) & (rows < fb[k + 1])] = k + 1
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


def read_mat_arrays(path: str, grader: int = 1):
  """Checked arrays of an original Duke Subject_XX.mat: images [H, W, S], grader layers
  [8, W, S] (float rows, NaN/0 = missing) and fluid [H, W, S] (zeros when absent)."""
  import scipy.io  # Only .mat reading needs it at import time.
  if grader not in (1, 2):
    raise fail(path, f"grader must be 1 or 2, got {grader}")
  try:
    data = scipy.io.loadmat(path)
  except FileNotFoundError:
    raise fail(path, "no such file") from None
  except Exception as e:  # scipy raises many types for damaged files.
    raise fail(path, f"not a readable MATLAB v5 file ({type(e).__name__}: {str(e)[:120]})") from None
  layers_key, fluid_key = f"manualLayers{grader}", f"manualFluid{grader}"
  missing = [k for k in ("images", layers_key) if k not in data]
  if missing:
    found = sorted(k for k in data if not k.startswith("__"))
    raise fail(path, f"missing {missing} (keys: {found})")
  vol = np.asarray(data["images"])
  layers = np.asarray(data[layers_key], np.float64)
  if vol.ndim == 2:
    vol = vol[..., None]
  if layers.ndim == 2:
    layers = layers[..., None]
  if vol.ndim != 3 or layers.ndim != 3 or layers.shape[0] != 8 or \
     layers.shape[1:] != vol.shape[1:]:
    raise fail(path, f"images {vol.shape} and {layers_key} {layers.shape} do not match "
               "[H, W, S] and [8, W, S]")
  fluid = np.asarray(data.get(fluid_key, np.zeros_like(vol)))
  if fluid.shape != vol.shape:
    raise fail(path, f"{fluid_key} has shape {fluid.shape}, images {vol.shape}")
  return vol, layers, fluid


def load_mat(path: str, grader: int = 1, unannotated: str = "crop") -> ScanSet:
  """Reads an original Duke Subject_XX.mat: the B-scans that `grader` annotated.

  unannotated: 'crop' keeps only the columns annotated in any scan of the volume (like the
  shared .npz files; columns inside that range but unannotated in one scan become IGNORE), or
  'ignore' keeps all columns and marks unannotated ones IGNORE.
  """
  if unannotated not in ("crop", "ignore"):
    raise ValueError(f"unannotated must be 'crop' or 'ignore', got {unannotated!r}")
  vol, layers, fluid = read_mat_arrays(path, grader)
  layers_key = f"manualLayers{grader}"
  finite = np.isfinite(layers) & (layers > 0)
  annotated_scans = np.nonzero(finite.any(axis=(0, 1)))[0]
  if annotated_scans.size == 0:
    raise fail(path, f"{layers_key} annotates no B-scan")
  images = to_uint8_images(np.moveaxis(vol[..., annotated_scans], -1, 0), path)
  height = images.shape[1]
  masks = np.stack([
      resolve_fluid(boundaries_to_mask(layers[..., s], height), fluid[..., s] > 0)
      for s in annotated_scans])
  if unannotated == "crop":
    cols = np.nonzero((masks != IGNORE).any(axis=(0, 1)))[0]
    images, masks = images[..., cols[0]:cols[-1] + 1], masks[..., cols[0]:cols[-1] + 1]
  stem = os.path.splitext(os.path.basename(path))[0]
  number = re.findall(r"\d+", stem)
  subjects = np.full(len(images), int(number[-1]) if number else 0)
  names = [f"{stem}_b{int(s):02d}" for s in annotated_scans]
  return ScanSet(images, masks, subjects, names, path)


def load_dir(path: str, subjects=None, grader: int = 1) -> list:
  """All Duke files in a folder (subject_XX.npz and/or Subject_XX.mat), optionally only the
  listed subject numbers. Returns a list of ScanSets, one per file. `grader` (1 or 2) picks
  whose annotations of the original .mat files are read (the .npz files hold grader 1's)."""
  if not os.path.isdir(path):
    raise fail(path, "no such folder (set --config.data.duke_dir)")
  files = sorted(glob.glob(os.path.join(path, "*.npz")) + glob.glob(os.path.join(path, "*.mat")))
  if not files:
    raise fail(path, "no .npz or .mat files in this folder")
  sets = []
  for f in files:
    number = re.findall(r"\d+", os.path.basename(f))
    if subjects and (not number or int(number[-1]) not in subjects):
      continue
    if f.endswith(".npz") and grader != 1:
      raise fail(f, f"holds grader 1's annotations only; --config.data.grader={grader} needs "
                 "the original Subject_XX.mat files")
    sets.append(load_npz(f, require_masks=True) if f.endswith(".npz")
                else load_mat(f, grader=grader))
  if not sets:
    raise fail(path, f"no files for subjects {list(subjects)}")
  return sets
