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

from octseg_jax.errors import InputError


TEMP_PREFIX = ".octseg-"
TEMP_PATTERN = TEMP_PREFIX + "*"     # leftovers of an interrupted write, removable by glob


def temp_prefix(stem: str) -> str:
  """Prefix of this process's temporary files for `stem`: TEMP_PREFIX, the pid, the stem."""
  return f"{TEMP_PREFIX}p{os.getpid()}.{stem}."


def temp_owner(name: str):
  """The pid that wrote a temporary file (temp_prefix), or None for other names."""
  head = os.path.basename(name)[len(TEMP_PREFIX):].split(".", 1)[0]
  return int(head[1:]) if head[:1] == "p" and head[1:].isdigit() else None


def _current_umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def file_mode() -> int:
  """Permissions of a newly created file under the process's umask (mkstemp uses 0600)."""
  return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds. An
  OSError that names no file (a write or close on a full disk) or the temporary file (a rename
  onto a folder) is raised naming `path`.

  The file gets the permissions a plain open() would give it (0666 less the umask).
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  base = os.path.basename(path)
  # Keep the extension last: some writers (matplotlib, PIL) pick the format from it.
  stem, ext = os.path.splitext(base)
  fd, tmp = tempfile.mkstemp(prefix=temp_prefix(stem), suffix=f".tmp{ext}", dir=folder)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)
  except OSError as e:
    if e.filename in (None, tmp):    # a full disk names no file; the temporary name is ours
      raise OSError(e.errno, e.strerror, path) from None
    raise
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def check_output_file(path: str, option: str = "--output") -> None:
  """Refuses (InputError naming the option) an output file whose folder does not exist, before
  any work is done for it."""
  if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
    raise InputError(f"{option}={path}: its folder does not exist")


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
  writer = csv.writer(buf, lineterminator="\n")     # Unix line ends, as the other outputs
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


class StreamingNpz:
  """An .npz archive written batch by batch, for arrays too large to hold at once.

  Each array [N, ...] of known shape and dtype goes to its own temporary .npy file beside
  `path` as batches arrive (append); close() checks every array is complete, packs them into a
  zip (deflated, as np.savez_compressed) under a temporary name and renames it onto `path`.
  np.load reads the result like any .npz. abort() removes the temporary files.
  """

  def __init__(self, path: str, shapes: dict, small: dict = None):
    self.path = path
    self.folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(self.folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    self.parts, self.files, self.filled, self.shapes = {}, {}, {}, {}
    try:
      for name, (shape, dtype) in shapes.items():
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(f"{stem}.{name}"), suffix=".tmp.npy",
                                   dir=self.folder)
        self.parts[name], self.files[name] = tmp, os.fdopen(fd, "wb")
        self.shapes[name], self.filled[name] = (tuple(shape), np.dtype(dtype)), 0
        np.lib.format.write_array_header_2_0(self.files[name], {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": tuple(int(s) for s in shape)})
      self.small = dict(small or {})
    except BaseException:
      self.abort()
      raise

  def append(self, name: str, batch: np.ndarray) -> None:
    """Appends rows [b, ...] of array `name` (shape and dtype must match the declared ones)."""
    shape, dtype = self.shapes[name]
    batch = np.ascontiguousarray(batch, dtype)
    if batch.shape[1:] != shape[1:] or self.filled[name] + len(batch) > shape[0]:
      raise ValueError(f"{name}: batch {batch.shape} does not fit {shape} after "
                       f"{self.filled[name]} rows")
    self.files[name].write(batch.tobytes())
    self.filled[name] += len(batch)

  def close(self) -> None:
    import shutil
    import zipfile
    for name, f in self.files.items():
      f.close()
      if self.filled[name] != self.shapes[name][0][0]:
        self.abort()
        raise ValueError(f"{name}: {self.filled[name]} of {self.shapes[name][0][0]} rows written")
    try:
      with atomic_path(self.path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as z:
          for name, array in self.small.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as dst:
              np.lib.format.write_array(dst, np.asarray(array), allow_pickle=False)
          for name, part in self.parts.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as dst, open(part, "rb") as src:
              shutil.copyfileobj(src, dst, 1 << 22)
    finally:
      self.abort()

  def abort(self) -> None:
    for name, f in self.files.items():
      f.close()
    for part in self.parts.values():
      if os.path.exists(part):
        os.remove(part)
