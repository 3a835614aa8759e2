"""A trained workdir as a callable: load config + best checkpoint, predict at native resolution."""

import dataclasses
import functools
import os
from typing import Any, Callable, List

import jax
import jax.numpy as jnp
import numpy as np

from octseg_jax.data import preprocessing
from octseg_jax.serving.checkpoints import inference_payload, restore_best
from octseg_jax.config.checks import check_split_record
from octseg_jax.data import pipeline
from octseg_jax.errors import InputError
from octseg_jax.models import create_model
from octseg_jax.serving.workdir import load_config, read_json


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

  def device_views(self, x: np.ndarray) -> jax.Array:
    """Softmax probabilities of the one view [1, B, h, w, K] (see ensemble.Ensemble)."""
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


def stored_config(workdir: str):
  """The config.json of a training workdir, or of an ensemble workdir's first member (read
  before the model is loaded, e.g. for its data limits)."""
  from octseg_jax.serving import ensemble
  if os.path.exists(os.path.join(workdir, ensemble.ENSEMBLE_FILE)):
    workdir = ensemble.read_ensemble_file(workdir)["members"][0]
  return load_config(workdir)


def load_trained(workdir: str, overrides=None) -> Trained:
  """Config, model and best-checkpoint variables of a training workdir, or an ensemble
  workdir (ensemble.ENSEMBLE_FILE) as an ensemble.Ensemble. overrides: checked inference
  settings {field: value} (inference_overrides.parse) set on its config."""
  from octseg_jax.serving import ensemble
  if os.path.exists(os.path.join(workdir, ensemble.ENSEMBLE_FILE)):
    return ensemble.load_ensemble(workdir, overrides)
  config = load_config(workdir)
  if overrides:
    from octseg_jax.config.paths import apply_overrides
    config = apply_overrides(config, overrides)
  split_path = os.path.join(workdir, "split.json")
  split = check_split_record(read_json(split_path), split_path, 2 ** len(config.model.widths))
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


def predict_outputs(trained: Trained, images: List[np.ndarray], batch_size: int = 0) -> List[dict]:
  """Per raw scan, at its own resolution: 'probs' (class probabilities float32 [H, W, K]) and,
  when the model has the heads, 'fluid' (probability [H, W]) and 'boundaries' ([8, W] rows).

  Scans are preprocessed with the workdir's recipe, grouped by model input size, run in
  fixed-size batches (one compilation serves every batch of a group), and mapped back.
  batch_size 0 = the config's train.eval_batch_size (overridable in eval/predict/explain).
  """
  batch_size = batch_size or int(trained.config.train.eval_batch_size)
  prepared = [preprocessing.prepare(im, None, trained.recipe) for im in images]
  out: List[np.ndarray] = [None] * len(images)
  groups = {}
  for i, (x, _, _) in enumerate(prepared):
    groups.setdefault(x.shape, []).append(i)
  for members in groups.values():
    size = min(batch_size, len(members))   # a single scan runs as a batch of one
    for start in range(0, len(members), size):
      chunk = members[start:start + size]
      x = padded_batch([prepared[i][0] for i in chunk], size)
      views = np.asarray(trained.device_views(x)) if trained.num_views > 1 else None
      if views is None:
        probs, heads = trained.device_outputs(x)
        probs = np.asarray(probs)
      else:
        probs, heads = views.mean(axis=0), trained.device_heads(x)
      for j, i in enumerate(chunk):
        out[i] = {"probs": preprocessing.restore(probs[j], prepared[i][2]),
                  **restore_heads(heads, j, prepared[i][2])}
        if views is not None:
          from octseg_jax.serving import ensemble
          out[i]["boundary_sd_rows"] = ensemble.boundary_spread_rows(
              views[:, j:j + 1], [prepared[i][2]])[0]
  return out
