"""Atomic file writes: every output goes to a temporary name in the same folder, then renames.

An interrupted run therefore never leaves a half-written file under the final name.
"""

import contextlib
import csv
import io
import json
import os
import tempfile
from typing import Any, Iterator, Sequence

import numpy as np


TEMP_PREFIX = ".octseg-"
TEMP_PATTERN = TEMP_PREFIX + "*"     # leftovers of an interrupted write, removable by glob


def _current_umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def file_mode() -> int:
  """Permissions of a newly created file under the process's umask (mkstemp uses 0600)."""
  return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds.

  The file gets the permissions a plain open() would give it (0666 less the umask).
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  base = os.path.basename(path)
  # Keep the extension last: some writers (matplotlib, PIL) pick the format from it.
  stem, ext = os.path.splitext(base)
  fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{stem}.", suffix=f".tmp{ext}", dir=folder)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_bytes(path: str, data: bytes) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, np.generic):
    return obj.item()
  raise TypeError(f"not JSON serialisable: {type(obj)}")


def write_json(path: str, obj: Any) -> None:
  """Writes JSON; NaN is written as null so that strict readers accept the file."""
  write_text(path, json.dumps(_nan_to_none(obj), indent=2, default=_json_default) + "\n")


def _nan_to_none(obj: Any) -> Any:
  if isinstance(obj, dict):
    return {k: _nan_to_none(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_nan_to_none(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return _nan_to_none(obj.tolist())
  if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
    return None
  return obj


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
  buf = io.StringIO()
  writer = csv.writer(buf)
  writer.writerow(header)
  writer.writerows(rows)
  write_text(path, buf.getvalue())


def write_npz(path: str, **arrays: np.ndarray) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez_compressed(f, **arrays)


def write_png(path: str, array: np.ndarray) -> None:
  """Writes a uint8 [H, W] or [H, W, 3] array as PNG."""
  from PIL import Image  # Imported here: only the writers of figures need Pillow.
  with atomic_path(path) as tmp:
    Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")


def save_figure(path: str, fig, dpi: int = 110) -> None:
  """Saves a matplotlib figure atomically and closes it."""
  import matplotlib.pyplot as plt
  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=os.path.splitext(path)[1][1:] or "png")
  plt.close(fig)
