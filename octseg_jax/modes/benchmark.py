"""--mode=benchmark: compile time, train-step time, forward time, explain time and its ratio to
one forward+backward pass, XLA FLOPs, peak memory, and the share of time spent waiting for data.

Inputs are random arrays of the model input size of the config (no data files needed). Times
are medians over `benchmark.steps` runs after `benchmark.warmup`, each ended with
block_until_ready.
"""

import os
import platform
import time
from typing import Dict

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from octseg_jax.runtime import distributed
from octseg_jax.cam import gradcam
from octseg_jax.data import preprocessing
from octseg_jax.runtime import provenance
from octseg_jax.runtime.timing import time_fn
from octseg_jax.training import train
from octseg_jax.data import pipeline
from octseg_jax.errors import InputError
from octseg_jax.models.flops import model_train_step_conv_flops
from octseg_jax.outputs.atomic import write_json, write_text
from octseg_jax.models import create_model
from octseg_jax.learning.task import Task
from octseg_jax.layout import CONFIG_FILE


def model_input_shape(config):
  """Model input size of the config's recipe for a phantom scan of the configured size."""
  recipe = pipeline.recipe_from_config(config)
  return preprocessing.input_shape(recipe, (config.data.synthetic.height,
                                            config.data.synthetic.width))


def _flops(stage) -> float:
  """FLOPs from XLA's cost analysis of a lowered (pre-optimisation) program. The lowered HLO is
  used because after GPU compilation convolutions become cuDNN calls that the analysis does not
  count."""
  try:
    cost = stage.cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0]
    return float(cost.get("flops", float("nan")))
  except Exception:  # Not every backend reports costs.
    return float("nan")


def peak_memory_bytes():
  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:
    return None
  return None if not stats else stats.get("peak_bytes_in_use")


def _placement(batch: int):
  """(batch, replicated) placement functions: the default device on one process; on several
  processes the global batch sharded over all processes' devices (distributed.py)."""
  if distributed.process_count() == 1:
    return jnp.asarray, lambda tree: tree
  mesh = train.make_mesh(0)
  if batch % mesh.devices.size:
    raise InputError(f"--config.benchmark.batch_size={batch}: not a multiple of the "
                           f"{mesh.devices.size} devices of all processes")
  sharded, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  rows = distributed.local_rows(sharded, batch)
  return (lambda a: distributed.global_batch(sharded, np.asarray(a)[rows], batch),
          lambda tree: distributed.replicate(tree, replicated))


def _environment() -> Dict:
  """Device, versions and flags of this process."""
  return {
      "device_kind": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform,
      "device_count": jax.device_count(), "jax": jax.__version__,
      "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
      "python": platform.python_version(), "cpu_count": os.cpu_count(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "process_count": distributed.process_count(),
      "local_device_count": jax.local_device_count()}


def _train_step_numbers(config, model, task, state, x_host, y_host, put_batch) -> Dict:
  """Compile time, step time, FLOPs and the data-wait share of the jitted train step; also
  returns the trained-on state under 'state'."""
  bench, batch = config.benchmark, x_host.shape[0]
  x, y, key = put_batch(x_host), put_batch(y_host), jax.random.key(1)
  step_fn = jax.jit(train.make_train_step(model, task, config.data.augment,
                                          config.train.ema_decay),
                    donate_argnums=(0,))
  t = time.perf_counter()
  lowered = step_fn.lower(state, x, y, key)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t
  distributed.barrier("benchmark train step compiled")
  holder = {"state": state}

  def one_step():
    holder["state"], loss = compiled(holder["state"], x, y, key)
    loss.block_until_ready()

  step = time_fn(one_step, bench.steps, bench.warmup)
  # Data wait: the same steps fed by the real host pipeline (gather + device_put per batch).
  data = pipeline.Prepared(x_host, y_host, [], np.zeros(batch))

  def fed_steps(n):
    t = time.perf_counter()
    for i in range(n):
      idx = pipeline.epoch_batches(batch, batch, 0, i, shuffle=True)[0]
      xb, yb = pipeline.gather(data, idx)
      holder["state"], loss = compiled(holder["state"], put_batch(xb), put_batch(yb), key)
    loss.block_until_ready()
    return time.perf_counter() - t

  n_fed = max(bench.steps, 2)
  wait_share = max(0.0, 1.0 - n_fed * step["median_s"] / fed_steps(n_fed))
  flops = _flops(lowered)
  conv_flops = model_train_step_conv_flops(config.model, batch, x_host.shape[1:])  # flops.py
  per_s = batch / step["median_s"]
  return {"compile_s": compile_s, "train_step": step, "images_per_s": per_s,
          "images_per_s_per_process": per_s / distributed.process_count(),
          "flops_per_step": flops, "achieved_flops_per_s": flops / step["median_s"],
          "conv_flops_per_step": conv_flops,
          "achieved_conv_flops_per_s": conv_flops / step["median_s"],
          "data_wait_share": wait_share, "state": holder["state"]}


def _inference_numbers(config, model, task, variables, x, y) -> Dict:
  """Forward time per image, one forward+backward, and (benchmark.explain) the all-class
  Grad-CAM time and its ratio to forward+backward."""
  bench = config.benchmark
  fwd = distributed.compile_together(jax.jit(lambda v, x: model.apply(v, x, train=False)),
                                     variables, x)
  forward = time_fn(lambda: fwd(variables, x).block_until_ready(), bench.steps, bench.warmup)

  def loss_eval(p, x, y):
    return task.train_loss(model.apply({"params": p, "batch_stats": variables["batch_stats"]},
                                       x, train=False, method=train.task_method(model, task)), y)

  fwd_bwd = distributed.compile_together(jax.jit(jax.grad(loss_eval)), variables["params"], x, y)
  fb = time_fn(lambda: jax.block_until_ready(fwd_bwd(variables["params"], x, y)), bench.steps,
               bench.warmup)
  result = {"forward_per_image_s": forward["median_s"] / x.shape[0],
            "forward_backward_s": fb["median_s"]}
  if bench.explain:
    layers = tuple(config.explain.layers)
    explain_fn = distributed.compile_together(jax.jit(lambda v, x: gradcam.explain_batch(
        model, v, x, layers, config.explain.method, "all")), variables, x)
    ex = time_fn(lambda: jax.block_until_ready(explain_fn(variables, x)), bench.steps,
                 bench.warmup)
    result.update(explain_all_classes_s=ex["median_s"],
                  explain_ratio_to_forward_backward=ex["median_s"] / fb["median_s"],
                  explain_classes=int(config.model.num_classes), explain_layers=list(layers))
  return result


def measure(config) -> Dict:
  """All benchmark numbers for a config (pure measurement; no files)."""
  batch = int(config.benchmark.batch_size or config.train.batch_size)
  shape = model_input_shape(config)
  model = create_model(config.model, config.train.compute_dtype)
  rng = np.random.default_rng(0)
  put_batch, put_replicated = _placement(batch)
  x_host = rng.uniform(size=(batch,) + shape).astype(np.float32)
  y_host = rng.integers(0, config.model.num_classes, size=(batch,) + shape).astype(np.uint8)
  task = Task.from_config(config)
  state = put_replicated(train.create_state(config, model, shape, jax.random.key(0)))
  result = dict(_environment(), model=dict(config.model),
                compute_dtype=config.train.compute_dtype,
                parameters=int(sum(p.size for p in jax.tree.leaves(state.params))),
                batch=batch, input_shape=list(shape))
  step = _train_step_numbers(config, model, task, state, x_host, y_host, put_batch)
  state = step.pop("state")
  result.update(step)
  variables = train.trained_variables(state)
  result.update(_inference_numbers(config, model, task, variables, put_batch(x_host),
                                   put_batch(y_host)))
  result["peak_memory_bytes"] = peak_memory_bytes()
  return result


def format_table(r: Dict) -> str:
  rows = [
      ("device", f"{r['device_kind']} x{r['device_count']} ({r['platform']}), jax {r['jax']}"),
      ("processes", f"{r.get('process_count', 1)} ({r.get('local_device_count', 1)} devices "
                    f"each), {r.get('images_per_s_per_process', r['images_per_s']):.1f} "
                    "images/s per process"),
      ("model", f"{r['parameters'] / 1e6:.2f}M params, widths {list(r['model']['widths'])}, "
                f"{r['compute_dtype']}"),
      ("input", f"batch {r['batch']} x {r['input_shape'][0]}x{r['input_shape'][1]}"),
      ("compile", f"{r['compile_s']:.2f} s"),
      ("train step", f"{r['train_step']['median_s'] * 1e3:.1f} ms (median), "
                     f"{r['images_per_s']:.1f} images/s"),
      ("conv FLOPs/step", f"{r['conv_flops_per_step'] / 1e9:.2f} GFLOP (analytic), achieved "
                          f"{r['achieved_conv_flops_per_s'] / 1e12:.3f} TFLOP/s"),
      ("XLA FLOPs/step", f"{r['flops_per_step'] / 1e9:.2f} GFLOP (lowered program; misses "
                         "cuDNN convolutions on GPU)"),
      ("forward", f"{r['forward_per_image_s'] * 1e3:.2f} ms/image"),
      ("forward+backward", f"{r['forward_backward_s'] * 1e3:.1f} ms/batch"),
      ("data wait", f"{100 * r['data_wait_share']:.1f}% of fed step time"),
      ("peak memory", "n/a" if r["peak_memory_bytes"] is None
       else f"{r['peak_memory_bytes'] / 2**30:.2f} GiB"),
  ]
  if "explain_all_classes_s" in r:
    rows.append(("explain (all classes)", f"{r['explain_all_classes_s'] * 1e3:.1f} ms/batch, "
                 f"{r['explain_ratio_to_forward_backward']:.2f}x forward+backward"))
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def run(config, output_dir: str) -> Dict:
  """measure() and write benchmark.json, the resolved config.json and provenance.json."""
  start = time.perf_counter()
  result = measure(config)
  if not distributed.is_writer():   # one writer: process 0 reports and writes the files
    return result
  print(format_table(result))
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "benchmark.json")
  write_json(path, result)
  write_text(os.path.join(output_dir, CONFIG_FILE), config.to_json_best_effort(indent=2))
  provenance.write(output_dir, config, wall_time_s=time.perf_counter() - start)
  print(f"wrote {path}")
  return result
