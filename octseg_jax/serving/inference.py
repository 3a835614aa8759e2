"""The one inference path: a training workdir (Trained) or an ensemble workdir (Ensemble: its
members averaged, each optionally also on the mirrored scan) loaded by load_trained, and
predict_outputs, which preprocesses raw scans, runs the model in fixed-size batches and maps
every output back to each scan's own resolution. eval, predict, explain, the benchmarks and
the scripts all predict through here."""

import dataclasses
import functools
import os
import json
from typing import Any, Callable, Dict, Iterator, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from octseg_jax.data import preprocessing
from octseg_jax.serving.checkpoints import inference_payload, restore_best
from octseg_jax.config.checks import check_split_record
from octseg_jax.data import pipeline
from octseg_jax.data.scans import volume_of
from octseg_jax.errors import InputError
from octseg_jax.geometry import boundaries as geom
from octseg_jax.models import create_model
from octseg_jax.cam.gradcam import LINEAR_METHODS
from octseg_jax.layout import SPLIT_FILE
from octseg_jax.serving.workdir import load_config, read_json

ENSEMBLE_FILE = "ensemble.json"  # in a workdir: {"members": [paths], "flip": bool, "settings"}
SETTING_PREFIXES = ("predict.", "explain.")   # the fields an ensemble's settings may set


@dataclasses.dataclass
class Trained:
  config: Any
  model: Any
  variables: dict
  recipe: preprocessing.Recipe
  epoch: int
  workdir: str
  split: dict
  logits_fn: Callable = None   # jit: (variables, x [B, h, w]) -> logits [B, h, w, K]
  heads_fn: Callable = None    # jit: (variables, x) -> (probabilities, the heads' outputs)

  def __post_init__(self):
    self.logits_fn = jitted_logits(self.model)
    self.heads_fn = jitted_with_heads(self.model) if self.head_names else None

  @property
  def head_names(self) -> tuple:
    """The optional heads the model has: 'fluid', 'boundaries'."""
    return tuple(name for name, field in (("fluid", "fluid_head"), ("boundaries", "boundary_head"))
                 if getattr(self.model, field, False))

  num_views = 1
  flip = False                 # one model runs on the scan only (Ensemble: also mirrored)

  @property
  def members(self) -> list:
    """The models whose outputs are averaged: this one (an Ensemble lists its own)."""
    return [self]

  def device_views(self, x: np.ndarray) -> jax.Array:
    """Softmax probabilities of the one view [1, B, h, w, K] (see Ensemble)."""
    return self.device_probs(x)[None]

  def device_probs(self, x: np.ndarray) -> jax.Array:
    """Softmax probabilities [B, h, w, K] for model inputs [B, h, w] (BatchNorm inference),
    left on the device without waiting (JAX dispatches asynchronously)."""
    return jax.nn.softmax(self.logits_fn(self.variables, jnp.asarray(x)), axis=-1)

  def device_heads(self, x: np.ndarray) -> dict:
    """The heads' outputs at model resolution: 'fluid' (probability [B, h, w]) and
    'boundaries' (ordered rows [B, 8, w]); {} for a model without heads."""
    return self.device_outputs(x)[1]

  def device_outputs(self, x: np.ndarray):
    """(device_probs, device_heads) of one forward pass (a model with heads runs once)."""
    if self.heads_fn is None:
      return self.device_probs(x), {}
    return self.heads_fn(self.variables, jnp.asarray(x))

  def probs(self, x: np.ndarray) -> np.ndarray:
    """device_probs as a host array."""
    return np.asarray(self.device_probs(x))


@dataclasses.dataclass(frozen=True)
class TrainingScans:
  """The scans a model (any member of an ensemble) trained on, by name and by pixels, and the
  volumes they came from.

  Duke scans are named STEM_bII wherever they come from (eval's split, a subject's .npz or
  .mat given to eval, predict or explain), where STEM is the file's name: subject_SS in the
  shared .npz files, Subject_SS in Duke's own .mat files, so names match whatever their case.
  A scan under another name (an image file, a user's .npz) is found by its pixels
  (pipeline.pixel_fingerprint: lossless copies), where split.json records them (workdirs
  trained since 2026-12-06, and pretrained/). Another B-scan of a volume that gave training
  scans (scans.volume_of: the STEM of STEM_bII, such as the other slices of a Duke .mat) is no
  training scan, but no new eye either: `flags` says both."""
  names: frozenset
  fingerprints: frozenset
  volumes: frozenset = frozenset()

  def holds(self, name, image=None) -> bool:
    return str(name).casefold() in self.names or (
        image is not None and bool(self.fingerprints)
        and pipeline.pixel_fingerprint(image) in self.fingerprints)

  def flags(self, names, images=None) -> Tuple[List[bool], List[bool]]:
    """Per scan: (a training scan, from a training volume: a training scan or another B-scan
    of a volume that gave training scans)."""
    images = [None] * len(names) if images is None else images
    seen = [self.holds(n, im) for n, im in zip(names, images)]
    return seen, [s or volume_of(n) in self.volumes for s, n in zip(seen, names)]


def training_scans(trained) -> TrainingScans:
  train = [m.split.get("train", {}) for m in trained.members]
  names = frozenset(str(n).casefold() for t in train for n in t.get("names", ()))
  return TrainingScans(names, frozenset(f for t in train for f in t.get("fingerprints", ())),
                       frozenset(v for v in map(volume_of, names) if v is not None))


def training_overlap(trained, names, images=None) -> Dict[str, int]:
  """How many of the scans `names` (with their `images`, uint8 [H, W] each) the model trained
  on, and how many are from volumes it trained on (TrainingScans.flags): the counts that
  manifest.json and eval's metrics record."""
  return overlap_counts(*training_scans(trained).flags(names, images))


def overlap_counts(seen, volume) -> Dict[str, int]:
  """The counts of TrainingScans.flags' two per-scan lists, under the keys every record uses."""
  return {"scans_in_training": int(sum(seen)), "scans_from_training_volumes": int(sum(volume))}


def padded_batch(inputs: List[np.ndarray], batch_size: int) -> np.ndarray:
  """Model inputs of one shape [h, w] stacked into a float32 batch of `batch_size`, zero-padded
  at the end, so that one compilation serves every batch."""
  x = np.zeros((batch_size,) + inputs[0].shape, np.float32)
  x[:len(inputs)] = np.stack(inputs)
  return x


@functools.lru_cache(maxsize=8)
def jitted_logits(model) -> Callable:
  """One jitted forward pass per model definition (Linen modules compare by their fields), so
  loading the same workdir again in one process does not compile again."""
  return jax.jit(lambda v, x: model.apply(v, x, train=False))


@functools.lru_cache(maxsize=8)
def jitted_with_heads(model) -> Callable:
  """(class probabilities, the heads' outputs: fluid as a probability, boundary rows) of one
  forward pass, jitted once per model."""
  def forward(v, x):
    out = model.apply(v, x, train=False, method="outputs")
    heads = {}
    if "fluid" in out:
      heads["fluid"] = jax.nn.sigmoid(out["fluid"])
    if "boundaries" in out:
      heads["boundaries"] = out["boundaries"]
    return jax.nn.softmax(out["classes"], axis=-1), heads
  return jax.jit(forward)


def model_record(trained) -> Dict[str, Any]:
  """What a run's record (predict's manifest, eval's metrics.json, explain's cam_stats.json)
  says of the model that ran: how many members and views, and the members' workdirs in order
  (which one --config.predict.members=1 picked)."""
  return {"members": len(trained.members), "views": trained.num_views,
          "member_workdirs": [m.workdir for m in trained.members]}


def is_ensemble(workdir: str) -> bool:
  """Whether `workdir` is an ensemble workdir (it holds ENSEMBLE_FILE)."""
  return os.path.exists(os.path.join(workdir, ENSEMBLE_FILE))


def stored_config(workdir: str, overrides=None):
  """The config.json of a training workdir, or of an ensemble workdir's first member with its
  settings (with_settings), with the checked inference `overrides` set as load_trained sets
  them (read before the model is loaded, e.g. for its data limits and explain's method)."""
  if is_ensemble(workdir):
    spec = read_ensemble_file(workdir)
    return member_config(spec["members"][0], with_settings(spec, overrides))
  return member_config(workdir, overrides)


def with_settings(spec: dict, overrides=None) -> Dict[str, Any]:
  """An ensemble's settings (read_ensemble_file) with the command line's overrides over them."""
  return {**spec["settings"], **(overrides or {})}


def member_config(workdir: str, overrides=None):
  """A training workdir's config.json with the checked inference `overrides` set."""
  config = load_config(workdir)
  if overrides:
    from octseg_jax.config.paths import apply_overrides
    config = apply_overrides(config, overrides)
  return config


def load_trained(workdir: str, overrides=None):
  """Config, model and best-checkpoint variables of a training workdir, or an ensemble
  workdir (ENSEMBLE_FILE) as an Ensemble. overrides: checked inference settings
  {field: value} (config.overrides.parse) set on its config."""
  if is_ensemble(workdir):
    return load_ensemble(workdir, overrides)
  trained = load_member(workdir, overrides)      # a broken workdir is reported first
  requested_members(overrides, 1, workdir)
  return trained


def requested_members(overrides, available: int, workdir: str) -> int:
  """predict.members of the overrides (0 = all), refused when above the workdir's members."""
  requested = int((overrides or {}).get("predict.members", 0))
  if requested > available:
    single = not is_ensemble(workdir)
    raise InputError(f"--config.predict.members={requested}: {workdir} has "
                     f"{available} member{'s' if available > 1 else ''}"
                     + (" (a single model)" if single else f" (its {ENSEMBLE_FILE})"))
  return requested


def load_member(workdir: str, overrides=None) -> Trained:
  """One training workdir: its config (with overrides), model and best checkpoint."""
  config = member_config(workdir, overrides)
  split_path = os.path.join(workdir, SPLIT_FILE)
  split = check_split_record(read_json(split_path), split_path,
                             preprocessing.input_multiple(config.model.widths))
  try:
    model = create_model(config.model, config.train.compute_dtype)
    variables = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1,) + tuple(split["input_shape"])), train=False))
  except (TypeError, ValueError) as e:
    raise InputError(f"{workdir}/config.json: the model it describes cannot be built "
                     f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
  abstract = inference_payload(variables["params"], variables.get("batch_stats", {}))
  payload, epoch = restore_best(workdir, abstract)
  variables = {"params": payload["params"], "batch_stats": payload["batch_stats"]}
  return Trained(config, model, variables, pipeline.recipe_from_config(config), epoch, workdir,
                 split)


def predict_probs(trained: Trained, images: List[np.ndarray], batch_size: int = 0) -> List[np.ndarray]:
  """Class probabilities float32 [H, W, K] at each raw scan's own resolution (see
  predict_outputs)."""
  return [out["probs"] for out in predict_outputs(trained, images, batch_size)]


def restore_heads(heads: dict, j: int, placement: preprocessing.Placement) -> dict:
  """Scan j of a batch of head outputs, mapped back to its raw scan: 'fluid' [H, W] (0 outside
  the band), 'boundaries' [8, W] in raw rows."""
  out = {}
  if "fluid" in heads:
    out["fluid"] = preprocessing.restore(np.asarray(heads["fluid"][j])[..., None], placement,
                                         outside=np.zeros(1, np.float32))[..., 0]
  if "boundaries" in heads:
    out["boundaries"] = preprocessing.restore_rows(np.asarray(heads["boundaries"][j]), placement)
  return out


def prepare(trained, image: np.ndarray, mask=None):
  """One raw scan [H, W] (and its mask) as the model sees it, with the workdir's recipe:
  (model input [h, w], mask at model resolution or None, placement to map outputs back)."""
  return preprocessing.prepare(image, mask, trained.recipe)


def launch(trained, images: List[np.ndarray], batch_size: int):
  """Preprocesses raw scans of one model input size and starts the network on them as one
  batch of `batch_size` (zero-padded), without waiting (JAX dispatches asynchronously).
  Returns (count, probabilities [batch_size, h, w, K] on the device, an ensemble's views
  [V, batch_size, h, w, K] or None, the heads' outputs ({} without heads), placements, the
  boundary smoothing predict.smooth_sd_columns)."""
  prepared = [prepare(trained, im) for im in images]
  x = padded_batch([p[0] for p in prepared], batch_size)
  if trained.num_views > 1:
    views, heads = trained.device_views_and_heads(x)
    probs = views.mean(axis=0)
  else:
    views = None
    probs, heads = trained.device_outputs(x)
  return (len(images), probs, views, heads, [p[2] for p in prepared],
          float(trained.config.predict.smooth_sd_columns))


def finish(launched) -> List[dict]:
  """Waits for a launched batch and maps it back, per raw scan at its own resolution: 'probs'
  (class probabilities float32 [H, W, K]; rows outside the model's input band are certain
  background), 'band' ((first, stop) raw rows of that band); with the heads 'fluid'
  (probability [H, W]) and 'boundaries' ([8, W] rows); for an ensemble 'boundary_sd_rows' (the
  views' spread [8, W] of their boundaries smoothed as the written ones are,
  boundary_spread_rows)."""
  count, probs, views, heads, placements, smooth_sd = launched
  probs = np.asarray(probs)
  views = None if views is None else np.asarray(views)
  out = []
  for j in range(count):
    place = placements[j]
    scan = {"probs": preprocessing.restore(probs[j], place),
            "band": (place.top, place.top + place.band_rows), **restore_heads(heads, j, place)}
    if views is not None:
      scan["boundary_sd_rows"] = boundary_spread_rows(views[:, j:j + 1], [placements[j]],
                                                      smooth_sd)[0]
    out.append(scan)
  return out


def stream(trained, images: List[np.ndarray], batch_size: int) -> Iterator[List[dict]]:
  """finish() of each batch of `batch_size` scans (one model input size), in order; batch k+1
  runs on the device while the host maps batch k back, and no more than two batches of
  outputs are held at once."""
  pending = None
  for start in range(0, len(images), batch_size):
    launched = launch(trained, images[start:start + batch_size], batch_size)
    if pending is not None:
      yield finish(pending)
    pending = launched
  if pending is not None:
    yield finish(pending)


def predict_outputs(trained: Trained, images: List[np.ndarray], batch_size: int = 0) -> List[dict]:
  """finish()'s outputs for raw scans of any sizes, in their order: scans are grouped by model
  input size and each group runs through stream() in batches of batch_size (a group smaller
  than that as one batch; one compilation serves every batch of a group). batch_size 0 = the
  config's train.eval_batch_size (overridable in eval/predict/explain)."""
  batch_size = batch_size or int(trained.config.train.eval_batch_size)
  groups = {}
  for i, im in enumerate(images):
    shape = preprocessing.input_shape(trained.recipe, np.shape(im))
    groups.setdefault(shape, []).append(i)
  out: List[dict] = [None] * len(images)
  for members in groups.values():
    size = min(batch_size, len(members))
    done = 0
    for outs in stream(trained, [images[i] for i in members], size):
      for scan in outs:
        out[members[done]] = scan
        done += 1
  return out


# ---------------------------------------------------------------- an ensemble workdir

@dataclasses.dataclass
class Ensemble:
  """An ensemble workdir (ENSEMBLE_FILE) as one trained model: the members' softmax outputs
  averaged, each member also on the mirrored scan with `flip`. It offers what predict and eval
  use of Trained (config, recipe, split, members, flip, device_probs, device_heads, views)."""
  members: list          # Trained, sharing one preprocessing recipe
  flip: bool
  workdir: str

  @property
  def config(self):
    return self.members[0].config

  @property
  def recipe(self):
    return self.members[0].recipe

  @property
  def split(self):
    return self.members[0].split

  @property
  def epoch(self):
    return [m.epoch for m in self.members]

  @property
  def head_names(self) -> tuple:
    return tuple(h for h in self.members[0].head_names
                 if all(h in m.head_names for m in self.members))

  @property
  def num_views(self) -> int:
    return len(self.members) * (2 if self.flip else 1)

  def device_views_and_heads(self, x):
    """One forward pass per view: the softmax probabilities of every view [V, B, h, w, K]
    (members x (direct, mirrored)) and the heads' outputs averaged over the views (fluid
    probability, boundary rows; the mirrored ones mirrored back)."""
    views, heads = [], []
    for m in self.members:
      probs, out = m.device_outputs(x)
      views.append(probs)
      heads.append(out)
      if self.flip:
        probs, out = m.device_outputs(np.ascontiguousarray(np.flip(x, -1)))
        views.append(jnp.flip(probs, -2))
        heads.append({k: jnp.flip(v, -1) for k, v in out.items()})
    return jnp.stack(views), {k: jnp.mean(jnp.stack([h[k] for h in heads]), axis=0)
                              for k in self.head_names}

  def device_views(self, x):
    """Softmax probabilities of every view [V, B, h, w, K] (members x (direct, mirrored))."""
    return self.device_views_and_heads(x)[0]

  def device_probs(self, x):
    return self.device_views(x).mean(axis=0)

  def probs(self, x) -> np.ndarray:
    return np.asarray(self.device_probs(x))

  def device_outputs(self, x):
    """(device_probs, device_heads) as for one model, from one pass over the views."""
    views, heads = self.device_views_and_heads(x)
    return views.mean(axis=0), heads

  def device_heads(self, x) -> dict:
    """The heads' outputs averaged over the views (fluid probability, boundary rows)."""
    return self.device_views_and_heads(x)[1]


def ensemble_record(members: List[str], flip: bool, settings=None, sources=None) -> dict:
  """What ENSEMBLE_FILE holds (read_ensemble_file reads it): the member workdirs (relative to
  the ensemble's folder, or absolute), flip, the optional settings and, for a packaged
  ensemble, the sources its members were copied from."""
  return ({"members": list(members), "flip": bool(flip)}
          | ({"sources": list(sources)} if sources else {})
          | ({"settings": settings} if settings else {}))


def read_ensemble_file(workdir: str) -> dict:
  """ENSEMBLE_FILE of a workdir, checked: members (a non-empty list of folder paths, relative
  to the workdir or absolute), flip (bool)."""
  path = os.path.join(workdir, ENSEMBLE_FILE)
  try:
    with open(path) as f:
      spec = json.load(f)
  except (OSError, ValueError) as e:
    raise InputError(f"{path}: not a readable JSON file ({type(e).__name__})") from None
  members = spec.get("members") if isinstance(spec, dict) else None
  if not (isinstance(members, list) and members and all(isinstance(m, str) for m in members)):
    raise InputError(f"{path}: 'members' must be a non-empty list of workdir paths")
  if not isinstance(spec.get("flip", False), bool):
    raise InputError(f"{path}: 'flip' must be true or false")
  return {"members": [os.path.join(workdir, m) for m in members],
          "flip": spec.get("flip", False), "settings": ensemble_settings(spec, path)}


def ensemble_settings(spec: dict, path: str) -> Dict[str, Any]:
  """ENSEMBLE_FILE's optional 'settings' {field: value}, checked by check_ensemble_settings;
  eval, predict and explain apply them beneath the command line's --config overrides."""
  settings = spec.get("settings", {})
  if not isinstance(settings, dict):
    raise InputError(f"{path}: 'settings' must be an object of predict.* and explain.* fields")
  problem = check_ensemble_settings(settings)
  if problem:
    raise InputError(f"{path}: settings: {problem}")
  return dict(settings)


def check_ensemble_settings(settings: Dict[str, Any]) -> str:
  """The problem with an ensemble's settings, or '': each must be a field of how the predictor
  is used (config.schema): predict.* other than predict.members (which selects members), or
  explain.* (e.g. the method and layers chosen on its members' held-out eyes; a method linear
  in the gradient, as explain needs for an ensemble), with a value its schema check accepts."""
  from octseg_jax.config import schema
  for field, value in settings.items():
    if not field.startswith(SETTING_PREFIXES) or field not in schema.FIELDS \
        or field == "predict.members":
      return (f"{field!r} is not a setting of the predictor (predict.* other than members, or "
              "explain.*)")
    problem = schema.FIELDS[field].check(value)
    if problem:
      return f"{field}={value!r}: {problem}"
    if field == "explain.method" and value not in LINEAR_METHODS:
      return (f"{field}={value!r}: an ensemble is explained with a gradient-linear method only "
              f"({', '.join(LINEAR_METHODS)})")
  return ""


def load_ensemble(workdir: str, overrides=None):
  """The ensemble workdir as an Ensemble, or with predict.members=N its first N members
  (N = 1: the first member alone, no flip: the fast single-model path)."""
  spec = read_ensemble_file(workdir)
  overrides = with_settings(spec, overrides)
  requested = requested_members(overrides, len(spec["members"]), workdir)
  paths = spec["members"][:requested or len(spec["members"])]
  for path in paths:
    if is_ensemble(path):
      raise InputError(f"{path}: a member of {workdir} is itself an ensemble")
  members = [load_member(p, overrides) for p in paths]
  for m in members[1:]:
    if m.recipe != members[0].recipe:
      raise InputError(f"{m.workdir}: preprocesses scans differently from {members[0].workdir} "
                       f"({m.recipe} vs {members[0].recipe}); members must share one recipe")
    if int(m.config.model.num_classes) != int(members[0].config.model.num_classes):
      raise InputError(f"{m.workdir}: predicts {m.config.model.num_classes} classes, "
                       f"{members[0].workdir} {members[0].config.model.num_classes}")
  if requested == 1:
    return members[0]
  return Ensemble(members, spec["flip"], workdir)


def boundary_spread_rows(views: np.ndarray, placements, smooth_sd: float = 0.0) -> np.ndarray:
  """[g, 8, W]: the views' spread (population sd, rows) of each sub-pixel boundary at the
  scans' own resolution; views [V, g, h, w, K] at model resolution. Each view's boundaries are
  found at model resolution and mapped back (preprocessing.restore_rows); without a resize
  that equals finding them on the views restored to the scan, at a fraction of the cost. With
  smooth_sd > 0 (predict.smooth_sd_columns) each view's boundaries are first smoothed along
  the B-scan as the written boundaries are (geometry.smooth_boundaries), so the spread is of
  what the views would write, not of their column-to-column jitter."""
  sd = []
  for j, placement in enumerate(placements):
    v = views[:, j, :placement.model_rows, :placement.model_cols]              # [V, h', w', K]
    rows = geom.boundaries_from_probs(v)                                     # [V, 8, w']
    raw = preprocessing.restore_rows(rows.reshape(-1, rows.shape[-1]), placement)
    raw = geom.smooth_boundaries(raw.reshape(len(v), rows.shape[1], -1), smooth_sd)
    sd.append(np.std(raw, axis=0))
  return np.stack(sd)
