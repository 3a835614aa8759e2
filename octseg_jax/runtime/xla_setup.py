"""XLA CPU options that make training fast on CPUs; applied before JAX starts its backends.

The options are versioned: CPU_FLAGS_BY_JAXLIB maps a jaxlib version prefix to the options
measured (and checked to be accepted) on it. XLA aborts the process on an option it does not
know, so jaxlib versions not listed, and GPU installs, get none. A user's own XLA_FLAGS win: an
option they already set is left as it is. OCTSEG_XLA_DEFAULTS=1 turns them all off (to measure
XLA's own defaults; the test suite passes either way).

jaxlib 0.10, 2-core x86 machine: configs/duke_cpu.py, batch 8 x 224x512, train step median:
default 10.5 s; YNNPACK convolution fusions off 5.2 s; that plus oneDNN 4.4 s (the YNNPACK
weight-gradient convolutions were 80% of the step in XLA's profile). Re-measured after the
layer rewrites of models/layers.py: see docs/results/cpu_2core/ (compare_*_xla_defaults.json).
"""

import importlib.metadata
import os
from typing import Dict

CPU_FLAGS_BY_JAXLIB: Dict[str, Dict[str, str]] = {
    "0.10.": {
        "--xla_cpu_experimental_ynn_fusion_type": "",
        "--xla_cpu_use_onednn": "true",
    },
}

GPU_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm-plugin")


def installed_version(name: str) -> str:
  """The installed version of a distribution ("" when it is not installed)."""
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return ""


def cpu_flags_for(jaxlib_version: str) -> Dict[str, str]:
  """The options measured on this jaxlib version ({} where none were checked)."""
  for prefix, flags in CPU_FLAGS_BY_JAXLIB.items():
    if jaxlib_version.startswith(prefix):
      return dict(flags)
  return {}


def apply_cpu_flags() -> str:
  """Adds the installed jaxlib's CPU options to XLA_FLAGS (unless already set) and returns the
  result. Must run before the first JAX computation. Skipped on GPU installs, on jaxlib versions
  not checked, and when OCTSEG_XLA_DEFAULTS=1."""
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("OCTSEG_XLA_DEFAULTS") == "1":
    return flags
  if any(installed_version(p) for p in GPU_PLUGINS):
    return flags
  for name, value in cpu_flags_for(installed_version("jaxlib")).items():
    if name not in flags:
      flags = f"{flags} {name}={value}".strip()
  os.environ["XLA_FLAGS"] = flags
  return flags
