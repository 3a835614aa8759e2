"""From sources to model-ready arrays: splits, preprocessing, batching, augmentation.

Data order and augmentation are functions of (seed, epoch, step) only, so an interrupted and
resumed run sees exactly the batches an uninterrupted run sees.
"""

import dataclasses
import hashlib
from typing import Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from octseg_jax.data import preprocessing
from octseg_jax.data import duke, folder, synthetic
from octseg_jax.data.scans import ScanSet
from octseg_jax.errors import InputError
from octseg_jax.anatomy import IGNORE, NUM_LAYERS

SOURCES = ("synthetic", "duke", "folder")
SPLITS = ("subject", "random", "all")


def recipe_from_config(config) -> preprocessing.Recipe:
  r = config.data.recipe
  return preprocessing.Recipe(
      band_height=int(r.band_height),
      resize_to=tuple(r.resize_to) if len(r.resize_to) else None,
      multiple=preprocessing.input_multiple(config.model.widths),
      normalisation=r.normalisation)


def data_folder(data_config):
  """The folder the configured source reads (data.duke_dir or data.folder_dir); None for the
  synthetic phantom."""
  if data_config.source in ("duke", "folder"):
    return getattr(data_config, f"{data_config.source}_dir")
  return None


def load_scans(data_config) -> List[ScanSet]:
  """The configured source as a list of ScanSets (one per file; sizes may differ)."""
  source = data_config.source
  max_side = int(data_config.max_image_side)
  if source == "synthetic":
    s = data_config.synthetic
    return [synthetic.generate(s.num_scans, s.height, s.width, s.seed, s.cysts,
                               s.scans_per_subject)]
  if source == "duke":
    return duke.load_dir(data_folder(data_config), tuple(data_config.subjects),
                         int(data_config.grader), max_side)
  if source == "folder":
    if not data_folder(data_config):
      raise InputError("--config.data.folder_dir: no folder given for source 'folder'")
    sets = folder.load_folder(data_folder(data_config), require_masks=True, max_side=max_side)
    for i, s in enumerate(sets):
      s.subjects = np.full(len(s), i + 1)    # no subject ids: every image its own group
    return sets
  raise ValueError(f"unknown data source {source!r}; valid: {SOURCES}")


def split_indices(subjects: np.ndarray, data_config, seed: int) -> Tuple[np.ndarray, np.ndarray]:
  """(train, val) scan indices; deterministic for a seed.

  subject: scans of data.val_subjects, or of fold data.fold when the sorted subjects are cut
    into data.num_folds consecutive groups, go to validation; no subject is on both sides.
  random: a data.val_fraction share of scans chosen at random (the paper's split).
  all: every scan trains and the "validation" set is the training set itself (for a final
    model on all data; its validation numbers measure fit, not generalisation).
  """
  n = len(subjects)
  if data_config.split == "all":
    return np.arange(n), np.arange(n)
  if data_config.split == "random":
    perm = np.random.default_rng([seed, 1]).permutation(n)
    n_val = max(1, int(round(data_config.val_fraction * n)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
  if data_config.split != "subject":
    raise ValueError(f"unknown split {data_config.split!r}; valid: {SPLITS}")
  unique = np.unique(subjects)
  if len(data_config.val_subjects):
    val_subjects = np.array(data_config.val_subjects)
    missing = np.setdiff1d(val_subjects, unique)
    if missing.size:
      raise InputError(f"--config.data.val_subjects: subjects {missing.tolist()} are not in "
                       f"the data (subjects: {unique.tolist()})")
  else:
    k, f = data_config.num_folds, data_config.fold
    if not 2 <= k <= len(unique):
      raise InputError(f"--config.data.num_folds={k}: need 2 to {len(unique)} folds, at least "
                       f"one of the data's {len(unique)} subjects each")
    if not 0 <= f < k:
      raise InputError(f"--config.data.fold={f}: must be below data.num_folds={k}")
    val_subjects = np.array_split(unique, k)[f]
  is_val = np.isin(subjects, val_subjects)
  if is_val.all() or not is_val.any():
    raise InputError("the subject split leaves no scan for training or validation")
  return np.nonzero(~is_val)[0], np.nonzero(is_val)[0]


@dataclasses.dataclass
class Prepared:
  """Model-ready scans. x float32 [N, h, w] in [0, 1]; y uint8 [N, h, w] (255 = ignore);
  extents int [N, 2]: the (rows, cols) of x that hold each scan, the rest padding (None: all)."""
  x: np.ndarray
  y: np.ndarray
  names: list
  subjects: np.ndarray
  extents: Optional[np.ndarray] = None

  def __len__(self):
    return len(self.x)


def flatten(sets: List[ScanSet]):
  """List of ScanSets -> per-scan lists (images, masks, subjects, names)."""
  images, masks, subjects, names = [], [], [], []
  for s in sets:
    for i in range(len(s)):
      images.append(s.images[i])
      masks.append(None if s.masks is None else s.masks[i])
      subjects.append(int(s.subjects[i]))
      names.append(s.names[i])
  return images, masks, np.array(subjects), names


def fluid_of(sets: List[ScanSet]) -> list:
  """Per scan, its fluid mask uint8 [H, W], or None where its source annotates no fluid."""
  return [None if s.fluid is None else s.fluid[i] for s in sets for i in range(len(s))]


def with_fluid(masks: list, fluid: list, source: str) -> list:
  """Training labels of a model with a fluid head: each mask with its fluid encoded
  (preprocessing.encode_fluid). A scan without fluid annotation is refused in one line."""
  if any(f is None for f in fluid):
    raise InputError(f"--config.model.fluid_head=True: data source {source!r} has scans "
                     "without a fluid annotation (a 'fluid' array), so the fluid head "
                     "cannot be trained on them")
  return [preprocessing.encode_fluid(m, f) for m, f in zip(masks, fluid)]


def prepare_scans(images, masks, names, subjects, recipe, pad_to) -> Prepared:
  """Preprocesses scans to one common model input size `pad_to` (padding marked IGNORE)."""
  xs, ys, extents = [], [], []
  for im, m in zip(images, masks):
    x, y, place = preprocessing.prepare(im, m, recipe, pad_to)
    xs.append(x)
    ys.append(y if y is not None else np.full(x.shape, IGNORE, np.uint8))
    extents.append((place.model_rows, place.model_cols))
  return Prepared(np.stack(xs), np.stack(ys), list(names), np.asarray(subjects),
                  np.asarray(extents, np.int32).reshape(-1, 2))


def pixel_fingerprint(image) -> str:
  """16 hex digits of BLAKE2b over an image's dtype, shape and bytes: the split record keeps one
  per training scan, so that inference can tell a training scan read under another name (a
  lossless copy: any changed pixel gives another fingerprint)."""
  a = np.ascontiguousarray(image)
  return hashlib.blake2b(f"{a.dtype.str}{a.shape}".encode() + a.tobytes(),
                         digest_size=8).hexdigest()


def scans_digest(images, masks) -> str:
  """SHA-256 of scans in order (each image's and mask's dtype, shape and bytes): the split
  record keeps it for the validation scans, so that eval can tell the same names with other
  pixels."""
  h = hashlib.sha256()
  for a in (np.ascontiguousarray(x) for pair in zip(images, masks) for x in pair):
    h.update(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
  return h.hexdigest()


def build(config) -> Tuple[Prepared, Prepared, Dict]:
  """Loads, splits and preprocesses the configured data: (train, val, split record)."""
  sets = load_scans(config.data)
  images, masks, subjects, names = flatten(sets)
  plain_masks = masks
  if config.model.fluid_head:
    masks = with_fluid(masks, fluid_of(sets), config.data.source)
  train_idx, val_idx = split_indices(subjects, config.data, config.seed)
  recipe = recipe_from_config(config)
  shapes = np.array([preprocessing.input_shape(recipe, im.shape) for im in images])
  pad_to = tuple(int(v) for v in shapes.max(axis=0))       # one size for both splits
  check_crop_width(int(config.data.augment.crop_width), pad_to, recipe.multiple)

  def take(idx):
    return prepare_scans([images[i] for i in idx], [masks[i] for i in idx],
                         [names[i] for i in idx], subjects[idx], recipe, pad_to)

  record = {
      "split": config.data.split, "seed": config.seed,
      "train": {"names": [names[i] for i in train_idx],
                "subjects": sorted(set(subjects[train_idx].tolist())),
                "fingerprints": [pixel_fingerprint(images[i]) for i in train_idx]},
      "val": {"names": [names[i] for i in val_idx],
              "subjects": sorted(set(subjects[val_idx].tolist())),
              "sha256": scans_digest([images[i] for i in val_idx],
                                     [plain_masks[i] for i in val_idx])},
      "input_shape": list(pad_to),
  }
  return take(train_idx), take(val_idx), record


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
  """[steps, batch_size] scan indices for one epoch.

  Training (shuffle=True): a permutation that is a function of (seed, epoch), the last batch
  filled up from the start of the permutation so every step has the same shape.
  Evaluation (shuffle=False): in order, the last batch padded with -1 (an empty slot).
  """
  if n == 0:
    raise ValueError("no scans to batch")
  order = np.random.default_rng([seed, 2, epoch]).permutation(n) if shuffle else np.arange(n)
  steps = -(-n // batch_size)
  fill = steps * batch_size - n
  pad = np.resize(order, fill) if shuffle else np.full(fill, -1)
  return np.concatenate([order, pad]).reshape(steps, batch_size)


def gather(data: Prepared, idx: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Batch arrays for indices; -1 slots give a zero image whose mask is all IGNORE."""
  safe = np.maximum(idx, 0)
  x, y = data.x[safe], data.y[safe].copy()
  y[idx < 0] = IGNORE
  return x, y


def augment_from_config(key: jax.Array, x: jax.Array, y: jax.Array,
                        aug) -> Tuple[jax.Array, jax.Array]:
  """`augment` with the options of a `config.data.augment` section."""
  return augment(key, x, y, aug.flip, aug.max_shift, aug.intensity, crop_width=aug.crop_width,
                 speckle=aug.speckle, column_shift=aug.column_shift, shadows=aug.shadows,
                 row_scale=aug.row_scale)


def check_crop_width(crop_width: int, input_shape: Tuple[int, int], multiple: int) -> None:
  """One line naming the option when a column crop cannot feed the model."""
  if crop_width and (crop_width % multiple or not 0 < crop_width <= input_shape[1]):
    raise InputError(f"--config.data.augment.crop_width={crop_width}: must be a multiple of "
                     f"{multiple} between {multiple} and the input width {input_shape[1]} "
                     "(0 = no crop)")


def random_column_crop(key: jax.Array, x: jax.Array, y: jax.Array, width: int):
  """x, y [H, W] -> [H, width]: `width` consecutive columns from a random start (jit-able)."""
  start = jax.random.randint(key, (), 0, x.shape[1] - width + 1)
  return (jax.lax.dynamic_slice_in_dim(x, start, width, axis=1),
          jax.lax.dynamic_slice_in_dim(y, start, width, axis=1))


def column_shift_offsets(key: jax.Array, width: int, max_shift: int,
                         knots: int = 5) -> jax.Array:
  """[width] int32 row offsets, a piecewise-linear curve through `knots` values drawn uniformly
  in [-max_shift, max_shift] at evenly spaced columns, rounded (a smooth vertical warp)."""
  values = jax.random.uniform(key, (knots,), minval=-max_shift, maxval=max_shift)
  curve = jnp.interp(jnp.arange(width, dtype=jnp.float32),
                     jnp.linspace(0.0, width - 1.0, knots), values)
  return jnp.round(curve).astype(jnp.int32)


def shift_columns(x: jax.Array, y: jax.Array, offsets: jax.Array):
  """Column c moved down by offsets[c] rows: out[r, c] = in[r - offsets[c], c]; rows shifted in
  are 0 in x and IGNORE in y."""
  rows = jnp.arange(x.shape[0])[:, None] - offsets[None, :]                 # [H, W]
  inside = (rows >= 0) & (rows < x.shape[0])
  src = jnp.clip(rows, 0, x.shape[0] - 1)
  x = jnp.where(inside, jnp.take_along_axis(x, src, axis=0), 0.0).astype(x.dtype)
  y = jnp.where(inside, jnp.take_along_axis(y, src, axis=0), jnp.uint8(IGNORE))
  return x, y


def scale_rows(x: jax.Array, y: jax.Array, factor: jax.Array):
  """x, y [H, W] stretched vertically by `factor` about the middle row c = (H - 1) / 2: output
  row r reads source row s = c + (r - c) / factor, x interpolated linearly and y from the
  nearest row (halves up), so each column's labels keep their order; rows whose s lies outside
  the scan are 0 in x and IGNORE in y."""
  h = x.shape[0]
  c = (h - 1) / 2.0
  src = c + (jnp.arange(h, dtype=jnp.float32) - c) / factor                       # [H]
  inside = ((src >= 0) & (src <= h - 1))[:, None]
  low = jnp.clip(jnp.floor(src), 0, max(h - 2, 0)).astype(jnp.int32)
  t = jnp.clip(src - low, 0.0, 1.0)[:, None]
  high = jnp.minimum(low + 1, h - 1)
  x_new = (1.0 - t) * x[low] + t * x[high]
  nearest = jnp.clip(jnp.floor(src + 0.5), 0, h - 1).astype(jnp.int32)
  return (jnp.where(inside, x_new, 0.0).astype(x.dtype),
          jnp.where(inside, y[nearest], jnp.uint8(IGNORE)))


def speckle_noise(key: jax.Array, x: jax.Array, sigma: float) -> jax.Array:
  """Multiplicative log-normal noise of mean 1: x * exp(sigma * N(0, 1) - sigma^2 / 2),
  clipped to [0, 1] (OCT speckle is multiplicative)."""
  z = jax.random.normal(key, x.shape, x.dtype)
  return jnp.clip(x * jnp.exp(sigma * z - 0.5 * sigma ** 2), 0.0, 1.0)


SHADOW_WIDTH = (2.0, 12.0)        # columns (half-intensity width of a vessel shadow)
SHADOW_DEPTH = (0.25, 0.75)       # share of the signal a shadow removes at its centre


def vessel_shadows(key: jax.Array, x: jax.Array, y: jax.Array, count: int) -> jax.Array:
  """x [H, W] with `count` simulated vessel shadows: a retinal vessel in the inner retina casts
  a dark vertical band from the vessel down through the outer retina and choroid. Each has a
  Gaussian column profile (half-intensity width uniform in SHADOW_WIDTH columns, centre
  uniform) and removes a share uniform in SHADOW_DEPTH of the signal at its centre, in every
  row from the column's first layer pixel (ILM; none where the column has no layer label)
  down. Labels are unchanged: graders mark layers through shadows."""
  k_c, k_w, k_d = jax.random.split(key, 3)
  h, w = x.shape
  centre = jax.random.uniform(k_c, (count, 1), minval=0.0, maxval=w - 1.0)
  width = jax.random.uniform(k_w, (count, 1), minval=SHADOW_WIDTH[0], maxval=SHADOW_WIDTH[1])
  depth = jax.random.uniform(k_d, (count, 1), minval=SHADOW_DEPTH[0], maxval=SHADOW_DEPTH[1])
  cols = jnp.arange(w, dtype=x.dtype)[None, :]
  # exp(-4 ln2 d^2 / width^2): half the depth at +-width / 2
  profile = depth * jnp.exp(-4.0 * np.log(2.0) * ((cols - centre) / width) ** 2)   # [count, W]
  keep = jnp.prod(1.0 - profile, axis=0)                                        # [W]
  layers, _, _ = preprocessing.decode_fluid(y, jnp)                             # fluid codes too
  layer = (layers >= 1) & (layers <= NUM_LAYERS)                                # [H, W]
  ilm = jnp.where(layer.any(axis=0), jnp.argmax(layer, axis=0), h)              # [W]
  below = jnp.arange(h)[:, None] >= ilm[None, :]
  return jnp.where(below, x * keep[None, :], x).astype(x.dtype)


def augment(key: jax.Array, x: jax.Array, y: jax.Array, flip: bool, max_shift: int,
            intensity: bool, crop_width: int = 0, speckle: float = 0.0,
            column_shift: int = 0, shadows: int = 0,
            row_scale: float = 0.0) -> Tuple[jax.Array, jax.Array]:
  """Keyed augmentation inside jit. x float [B, H, W] in [0, 1], y uint8 [B, H, W].

  Horizontal flip (a B-scan mirrored is a plausible scan of the other eye), integer shifts of up
  to max_shift pixels (pixels shifted in are IGNORE), and intensity jitter: gamma 0.7..1.4,
  gain 0.7..1.3 and offset -0.05..0.05, to make the model robust to device brightness.
  Optional (each off at 0, and then the output is exactly that of the three above):
  crop_width random consecutive columns (output [B, H, crop_width]; cheaper steps), a smooth
  per-column vertical warp of up to column_shift rows, and multiplicative speckle noise of
  log-sd `speckle`, `shadows` simulated vessel shadows (vessel_shadows; key from
  fold_in(key, 2)), and a vertical stretch by a factor uniform in 1 +- row_scale (scale_rows;
  key from fold_in(key, 3)): layer thickness varies between eyes. Their keys derive from
  fold_in, so the others' draws do not change.
  """
  def one(key, x, y):
    k_flip, k_dy, k_dx, k_g, k_a, k_b = jax.random.split(key, 6)
    k_crop, k_cols, k_speckle = jax.random.split(jax.random.fold_in(key, 1), 3)
    if crop_width:
      x, y = random_column_crop(k_crop, x, y, crop_width)
    if row_scale:
      x, y = scale_rows(x, y, jax.random.uniform(jax.random.fold_in(key, 3), (),
                                                 minval=1.0 - row_scale, maxval=1.0 + row_scale))
    if column_shift:
      x, y = shift_columns(x, y, column_shift_offsets(k_cols, x.shape[1], column_shift))
    if flip:
      do = jax.random.bernoulli(k_flip)
      x = jnp.where(do, x[:, ::-1], x)
      y = jnp.where(do, y[:, ::-1], y)
    if max_shift:
      dy = jax.random.randint(k_dy, (), -max_shift, max_shift + 1)
      dx = jax.random.randint(k_dx, (), -max_shift, max_shift + 1)
      rows = jnp.arange(x.shape[0])[:, None] - dy
      cols = jnp.arange(x.shape[1])[None, :] - dx
      inside = (rows >= 0) & (rows < x.shape[0]) & (cols >= 0) & (cols < x.shape[1])
      x = jnp.roll(x, (dy, dx), axis=(0, 1))
      y = jnp.where(inside, jnp.roll(y, (dy, dx), axis=(0, 1)), jnp.uint8(IGNORE))
    if intensity:
      gamma = jnp.exp(jax.random.uniform(k_g, (), minval=np.log(0.7), maxval=np.log(1.4)))
      gain = jax.random.uniform(k_a, (), minval=0.7, maxval=1.3)
      offset = jax.random.uniform(k_b, (), minval=-0.05, maxval=0.05)
      x = jnp.clip(gain * jnp.power(jnp.clip(x, 1e-6, 1.0), gamma) + offset, 0.0, 1.0)
    if shadows:
      x = vessel_shadows(jax.random.fold_in(key, 2), x, y, shadows)
    if speckle:
      x = speckle_noise(k_speckle, x, speckle)
    return x, y

  return jax.vmap(one)(jax.random.split(key, x.shape[0]), x, y)
