"""XLA CPU options that make training fast on CPUs; applied before JAX starts its backends.

Measured on a 2-core x86 machine with jax 0.10.2 (configs/duke_cpu.py, batch 8 x 224x512,
train step median): default 10.5 s; YNNPACK convolution fusions off 5.2 s; that plus oneDNN
4.4 s. The YNNPACK weight-gradient convolutions were 80% of the step (XLA profile). A user's
own XLA_FLAGS win: an option they already set is left as it is.
"""

import importlib.metadata
import os

CPU_FLAGS = {
    "--xla_cpu_experimental_ynn_fusion_type": "",
    "--xla_cpu_use_onednn": "true",
}


VERIFIED_JAXLIB = ("0.10.",)   # XLA aborts on flags it does not know: only where checked


def _installed(name: str) -> str:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return ""


def apply_cpu_flags() -> str:
  """Adds CPU_FLAGS to XLA_FLAGS (unless already set) and returns the result. Must run before
  the first JAX computation. Skipped on GPU installs, on jaxlib versions not checked, and when
  OCTSEG_XLA_DEFAULTS=1 (to measure XLA's own defaults)."""
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("OCTSEG_XLA_DEFAULTS") == "1":
    return flags
  gpu = any(_installed(p) for p in ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm-plugin"))
  if gpu or not _installed("jaxlib").startswith(VERIFIED_JAXLIB):
    return flags
  for name, value in CPU_FLAGS.items():
    if name not in flags:
      flags = f"{flags} {name}={value}".strip()
  os.environ["XLA_FLAGS"] = flags
  return flags
