"""Wall-clock timing of a blocking call: --mode=benchmark and the single-program benchmark
scripts (pure Python: benchmarks/torch_segnet.py times PyTorch with it without importing JAX)."""

import statistics
import time
from typing import Callable, Dict


def time_fn(fn: Callable, steps: int, warmup: int) -> Dict:
  """Median wall time of fn() (which must block) over `steps` runs after `warmup`."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times)}
