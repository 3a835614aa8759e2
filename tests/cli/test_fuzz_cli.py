"""Property tests through the command line, in-process (main.run_command): damaged and
malformed files of every supported type, odd image modes and sizes, invalid config values,
broken workdirs and bad output paths. Every case ends in a correct result or in exit status 2
with one line naming the file or option; no input file ever changes. A few subprocess cases
check the exit codes of the real entry point.

Case counts (hypothesis, derandomized): config values 300 (every field of config.schema), files 45 folder runs x 5 files = 225,
workdirs 40, output paths 40: 605 cases.
"""

import hashlib
import io
import zipfile
import math
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import scipy.io
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

import main
from octseg_jax.config import schema
from octseg_jax.config.paths import get_field
from conftest import ROOT

def fuzz(examples: int):
  """Deterministic cases (the same every run), no example database, no time limit per case."""
  return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))


def _cli(capsys, *args):
  capsys.readouterr()
  status = main.run_command(["main.py", *args])
  captured = capsys.readouterr()
  return status, captured.err.strip().splitlines(), captured.out


def _digest(path) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _fresh(tmp_path_factory, name):
  return tmp_path_factory.mktemp(name, numbered=True)


def _assert_one_line_error(status, err, names):
  assert status == 2, err
  assert len(err) == 1 and err[0].startswith("error: "), err
  assert "Traceback" not in err[0]
  assert any(n in err[0] for n in names), (err, names)


# ---- invalid (and valid) config values -------------------------------------------------------

def _render(value, inner: bool = False) -> str:
  if isinstance(value, tuple):
    return "(" + ",".join(_render(v, True) for v in value) + ("," if len(value) == 1 else "") + ")"
  return repr(value) if inner and isinstance(value, str) else str(value)


BOOL_WORDS = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}


def _same(got, value) -> bool:
  """The value training received equals the one given (ints given for floats become floats,
  absl's words for a flag its truth value)."""
  if isinstance(got, bool) and isinstance(value, str):
    return value.lower() in BOOL_WORDS and got is BOOL_WORDS[value.lower()]
  if isinstance(value, tuple):
    return isinstance(got, (list, tuple)) and len(got) == len(value) and \
        all(_same(g, v) for g, v in zip(got, value))
  if isinstance(value, (int, float)) and isinstance(got, (int, float)):
    return float(got) == float(value)
  return got == value


INTS = st.one_of(st.integers(-10, 10), st.sampled_from([-2 ** 31, 2 ** 40]))
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), INTS)
NAMES = st.one_of(st.sampled_from(["", "none", "Float32", "duke ", "gradcam++", "x" * 40]),
                  st.text("abcdefgh_", min_size=1, max_size=8))
TUPLES = st.one_of(st.just(()), st.lists(INTS, min_size=1, max_size=3).map(tuple))
NAME_TUPLES = st.lists(st.text("abcdefgh_0", min_size=1, max_size=8), max_size=3).map(tuple)


def _values(spec) -> st.SearchStrategy:
  """Values for a field, from its default's type (and its choices): the schema's every field."""
  default, choices = spec.default, getattr(spec.check, "choices", ())
  if isinstance(default, bool):
    kinds = [st.booleans(), INTS, NAMES]
  elif isinstance(default, int):
    kinds = [INTS, NUMBERS]
  elif isinstance(default, float):
    kinds = [NUMBERS]
  elif isinstance(default, tuple):
    kinds = [NAME_TUPLES if default and isinstance(default[0], str) else TUPLES]
  else:
    kinds = [NAMES]
  if choices:
    kinds.append(st.sampled_from(choices))
  return st.one_of(st.just(default), *kinds)


def _must_refuse(spec, value) -> bool:
  """Refusals the schema promises whatever its code says: a non-finite number, a negative
  integer (no field takes one), text for a number, a number other than 0 or 1 for a flag, a
  value outside a field's choices, negative integers in a tuple."""
  default = spec.default
  if isinstance(value, float) and not math.isfinite(value):
    return True
  if isinstance(value, int) and not isinstance(value, bool) and value < 0:
    return True
  if isinstance(default, bool) and isinstance(value, str):
    return value.lower() not in BOOL_WORDS       # absl's boolean syntax: true, t, false, f, ...
  if isinstance(default, bool) and not isinstance(value, bool):
    return value not in (0, 1)      # absl's boolean flag syntax takes 0 and 1 (and true/false)
  if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
    return True
  choices = getattr(spec.check, "choices", None)
  if choices is not None and value not in choices:
    return True
  return isinstance(value, tuple) and any(isinstance(x, int) and x < 0 for x in value)


FILE_FIELDS = ("data.source", "data.duke_dir", "data.folder_dir")   # accepted only with folders


@fuzz(300)
@given(field=st.sampled_from(sorted(schema.FIELDS)), data=st.data())
def test_config_values(field, data, tmp_path_factory, capsys, monkeypatch):
  from octseg_jax.training import train
  spec = schema.FIELDS[field]
  value = data.draw(_values(spec))
  workdir = _fresh(tmp_path_factory, "cfg") / "w"
  started = []
  monkeypatch.setattr(train, "train_and_evaluate", lambda c, w: started.append((c, w)) or {})
  status, err, _ = _cli(capsys, "--config=configs/tiny.py", f"--config.{field}={_render(value)}",
                        f"--workdir={workdir}")
  assert not workdir.exists()
  if _must_refuse(spec, value):
    assert status != 0, (field, value)
  if type(value) is type(spec.default) and value == spec.default and field not in FILE_FIELDS:
    assert status == 0, (field, value, err)          # every default is accepted
  if status == 0:       # accepted: training got exactly this value
    (got, _), = started
    assert _same(get_field(got, field), value), (get_field(got, field), value)
  else:
    assert not started
    _assert_one_line_error(status, err, [field.split(".")[-1], "--config"])


# ---- damaged and malformed files of every supported type --------------------------------------

IMAGE_MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F"]


def _image_bytes(mode, rows, cols, fmt, seed, pages=1):
  rng = np.random.default_rng(seed)
  frames = []
  for _ in range(pages):
    base = Image.fromarray(rng.integers(0, 256, (rows, cols), dtype=np.uint8))
    if mode == "F":
      im = Image.fromarray(rng.uniform(-5, 5 if seed % 2 else 1, (rows, cols)).astype(np.float32))
    elif mode == "I;16":
      im = Image.fromarray(rng.integers(0, 65536, (rows, cols)).astype(np.uint16))
    elif mode == "I":
      im = Image.fromarray(rng.integers(0, 70000, (rows, cols)).astype(np.int32))
    else:
      im = base.convert(mode)
    frames.append(im)
  buf = io.BytesIO()
  try:
    frames[0].save(buf, format=fmt, save_all=pages > 1, append_images=frames[1:])
  except (OSError, ValueError, KeyError):
    frames = [f.convert("RGB") for f in frames]           # a mode this format cannot hold
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt)
  return buf.getvalue()


def _npz_bytes(kind, rows, cols, seed):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (2, rows, cols)).astype(np.uint8)
  arrays = {"images": images}
  if kind == "masks":
    arrays["masks"] = rng.integers(0, 8, images.shape).astype(np.uint8)
  elif kind == "bad_masks":
    arrays["masks"] = rng.integers(0, 300, images.shape)
  elif kind == "float_images":
    arrays["images"] = rng.uniform(0, 1.5, images.shape)
  elif kind == "nan_images":
    arrays["images"] = np.where(images > 250, np.nan, images / 255.0)
  elif kind == "string_images":
    arrays["images"] = np.array(["a"] * 4)
  elif kind == "complex_images":
    arrays["images"] = images + 1j
  elif kind == "3d_wrong":
    arrays["images"] = images[None, None]
  elif kind == "index_fields":
    index_fields = [np.array([0.0, np.nan]), np.array(["a", "b"]), np.arange(3), np.array([4, 9])]
    subjects = [np.array(3), np.array([1.5, 2]), np.array([1, 1])]
    arrays["bscan_index"] = index_fields[rng.integers(len(index_fields))]
    arrays["subject"] = subjects[rng.integers(len(subjects))]
  elif kind == "no_images":
    arrays = {"pixels": images}
  buf = io.BytesIO()
  if kind == "bomb":                 # declares 40000 x 40000 pixels, holds 64 KiB of zeros
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (40000, 40000)})
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
      zf.writestr("images.npy", header.getvalue() + b"\0" * 65536)
  elif kind == "npy":
    np.save(buf, images)
  else:
    np.savez(buf, **arrays)
  return buf.getvalue()


def _mat_bytes(kind, rows, cols, seed):
  rng = np.random.default_rng(seed)
  vol = rng.integers(0, 256, (rows, cols, 3)).astype(np.uint8)
  layers = np.full((8, cols, 3), np.nan)
  layers[:, :, 1] = np.linspace(2, rows - 2, 8)[:, None]
  fields = {"images": vol, "manualLayers1": layers}
  if kind == "no_layers":
    del fields["manualLayers1"]
  elif kind == "layer_strings":
    fields["manualLayers1"] = np.array(["row"] * 8)
  elif kind == "no_top":
    fields["manualLayers1"][0] = np.nan
  elif kind == "wrong_shape":
    fields["manualLayers1"] = layers[:7]
  elif kind == "cells":
    cells = np.empty((1, 2), dtype=object)
    cells[0, 0], cells[0, 1] = vol, "x"
    fields["images"] = cells
  elif kind == "fluid":
    fields["manualFluid1"] = rng.integers(0, 2, (rows, cols + 1, 3))
  elif kind == "tall":               # 4097 rows of zeros: refused from the variable's header
    fields["images"] = np.zeros((4097, cols, 3), np.uint8)
  buf = io.BytesIO()
  scipy.io.savemat(buf, fields, do_compression=kind in ("compressed", "tall"))
  return buf.getvalue()


MUST_FAIL = ("bomb", "tall")         # beyond data.max_image_side, damaged or not


@st.composite
def scan_files(draw):
  """(file type, content, whether it must fail): a well-formed file of some type, then maybe
  damaged."""
  kind = draw(st.sampled_from(["png", "tif", "jpg", "bmp", "npz", "mat", "txt"]))
  # A few sizes (too small, odd, even): each new model input size costs a compilation.
  rows, cols = draw(st.sampled_from([1, 5, 8, 41, 72])), draw(st.sampled_from([1, 6, 8, 33, 44]))
  seed = draw(st.integers(0, 2 ** 16))
  if kind in ("png", "tif", "jpg", "bmp"):
    fmt = {"png": "PNG", "tif": "TIFF", "jpg": "JPEG", "bmp": "BMP"}[kind]
    variant = "tall" if draw(st.booleans()) and kind == "png" else "plain"
    if variant == "tall":
      rows, cols = 1, 4097                                   # beyond data.max_image_side
    data = _image_bytes(draw(st.sampled_from(IMAGE_MODES)), rows, cols, fmt, seed,
                        pages=draw(st.integers(1, 3)) if kind == "tif" else 1)
  elif kind == "npz":
    variant = draw(st.sampled_from(
        ["plain", "masks", "bad_masks", "float_images", "nan_images", "string_images",
         "complex_images", "3d_wrong", "index_fields", "no_images", "npy", "bomb"]))
    data = _npz_bytes(variant, max(rows, 8), max(cols, 8), seed)
  elif kind == "mat":
    variant = draw(st.sampled_from(
        ["plain", "no_layers", "layer_strings", "no_top", "wrong_shape", "cells", "fluid",
         "compressed", "tall"]))
    data = _mat_bytes(variant, max(rows, 12), max(cols, 8), seed)
  else:
    variant, data = "plain", b"notes"
  damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
  if damage == "truncate" and len(data) > 1:
    data = data[:draw(st.integers(0, len(data) - 1))]
  elif damage == "flip" and data:
    data = bytearray(data)
    for pos in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=12)):
      data[pos] ^= draw(st.integers(1, 255))
    data = bytes(data)
  return kind, data, variant in MUST_FAIL and damage == "none"


@fuzz(45)
@given(files=st.lists(scan_files(), min_size=5, max_size=5))
def test_damaged_files_in_a_folder_run(files, trained_workdir, tmp_path_factory, capsys):
  workdir, _ = trained_workdir
  root = _fresh(tmp_path_factory, "files")
  src, out = root / "in", root / "out"
  src.mkdir()
  names = []
  for i, (kind, data, _) in enumerate(files):
    name = f"f{i}.{kind}"
    (src / name).write_bytes(data)
    names.append(name)
  before = {n: _digest(src / n) for n in names}
  status, err, _ = _cli(capsys, "--mode=predict", f"--workdir={workdir}", f"--input={src}",
                        f"--output={out}", "--figures=none")
  assert {n: _digest(src / n) for n in names} == before            # inputs never change
  if not any(k != "txt" for k, _, _ in files):
    _assert_one_line_error(status, err, [str(src)])                # nothing to read at all
    return
  manifest = json.loads((out / "manifest.json").read_text())
  problems = {}
  if (out / "errors.csv").exists():
    import csv
    with open(out / "errors.csv") as f:
      for file, state, reason in list(csv.reader(f))[1:]:
        problems[os.path.basename(file)] = (state, reason)
  for name, (kind, _, must_fail) in zip(names, files):
    stem = os.path.splitext(name)[0]
    assert not must_fail or problems.get(name, ("",))[0] == "failed", (name, problems)
    if name in problems:
      state, reason = problems[name]
      assert state == ("skipped" if kind == "txt" else "failed")
      assert "\n" not in reason and (kind == "txt" or reason.startswith(str(src / name)))
      assert not (out / f"{stem}.npz").exists()
    else:                                                          # a correct result
      with np.load(out / f"{stem}.npz") as d:
        pred, bounds = d["pred"], d["boundaries"]
      assert pred.dtype == np.uint8 and pred.ndim == 3 and pred.max() <= 7
      assert bounds.shape == (pred.shape[0], 8, pred.shape[2])
  failed = sum(s == "failed" for s, _ in problems.values())
  assert manifest["failed"] == failed and manifest["complete"]
  if failed:
    _assert_one_line_error(status, err[-1:], [str(src)])
  else:
    assert status == 0, err
  assert not [f for f in os.listdir(out) if f.startswith(".octseg-")]


# ---- broken workdirs ---------------------------------------------------------------------------

WORKDIR_DAMAGE = ["delete_config", "garbage_config", "config_list", "drop_config_field",
                  "bad_config_value", "delete_split", "drop_input_shape", "bad_input_shape",
                  "drop_split_val", "delete_best", "damage_best", "empty_best", "config_is_dir"]


@fuzz(40)
@given(damage=st.sampled_from(WORKDIR_DAMAGE), field=st.sampled_from(
    ["seed", "data", "model", "train", "explain"]), value=st.sampled_from(
    ['"x"', "-3", "null", "[1, 2]", "{}", "1e400"]))
def test_broken_workdirs(damage, field, value, trained_workdir, tmp_path_factory, capsys):
  root = _fresh(tmp_path_factory, "wd")
  workdir = str(root / "w")
  shutil.copytree(trained_workdir[0], workdir)
  config_path, split_path = os.path.join(workdir, "config.json"), os.path.join(workdir, "split.json")
  config, split = json.load(open(config_path)), json.load(open(split_path))
  if damage == "delete_config":
    os.remove(config_path)
  elif damage == "garbage_config":
    open(config_path, "w").write('{"data": ')
  elif damage == "config_list":
    json.dump([1, 2], open(config_path, "w"))
  elif damage == "drop_config_field":
    config.pop(field, None)
    json.dump(config, open(config_path, "w"))
  elif damage == "bad_config_value":
    open(config_path, "w").write(json.dumps(dict(config, train="@")).replace('"@"', value))
  elif damage == "delete_split":
    os.remove(split_path)
  elif damage == "drop_input_shape":
    split.pop("input_shape")
    json.dump(split, open(split_path, "w"))
  elif damage == "bad_input_shape":
    open(split_path, "w").write(json.dumps(dict(split, input_shape="@")).replace('"@"', value))
  elif damage == "drop_split_val":
    split.pop("val")
    json.dump(split, open(split_path, "w"))
  elif damage == "delete_best":
    shutil.rmtree(os.path.join(workdir, "best"))
  elif damage == "damage_best":
    for r, _, fs in os.walk(os.path.join(workdir, "best")):
      for f in fs:
        open(os.path.join(r, f), "wb").write(b"\x00garbage")
  elif damage == "empty_best":
    shutil.rmtree(os.path.join(workdir, "best"))
    os.mkdir(os.path.join(workdir, "best"))
  elif damage == "config_is_dir":
    os.remove(config_path)
    os.mkdir(config_path)
  scan = root / "scan.npz"
  np.savez(scan, images=np.random.default_rng(0).integers(0, 255, (1, 40, 32)).astype(np.uint8))
  digest = _digest(scan)
  status, err, _ = _cli(capsys, "--mode=predict", f"--workdir={workdir}", f"--input={scan}",
                        f"--output={root / 'out'}", "--figures=none")
  assert _digest(scan) == digest
  if status == 0:
    with np.load(root / "out" / "scan.npz") as d:
      assert d["pred"].shape == (1, 40, 32)
    assert damage in ("drop_config_field", "drop_split_val") or \
        False      # defaults / unused fields
  else:
    _assert_one_line_error(status, err, [workdir])
    assert not (root / "out").exists()


# ---- bad output paths --------------------------------------------------------------------------

@fuzz(40)
@given(kind=st.sampled_from(["file", "under_file", "input_folder", "workdir", "long_name",
                             "odd_name", "proc", "nested_new"]),
       name=st.text("abc xyz-_.é", min_size=1, max_size=12).filter(lambda s: s not in (".", "..")))
def test_output_paths(kind, name, trained_workdir, tmp_path_factory, capsys):
  workdir, _ = trained_workdir
  root = _fresh(tmp_path_factory, "outp")
  scan = root / "scan.npz"
  np.savez(scan, images=np.random.default_rng(1).integers(0, 255, (1, 40, 32)).astype(np.uint8))
  (root / "plain.txt").write_text("keep")
  before = {p: _digest(root / p) for p in ("scan.npz", "plain.txt")}
  wd_before = sorted(os.listdir(workdir))
  output = {"file": root / "plain.txt", "under_file": root / "plain.txt" / name,
            "input_folder": root, "workdir": workdir, "long_name": root / ("n" * 300),
            "odd_name": root / name, "proc": f"/proc/octseg_{name}",
            "nested_new": root / "a" / name / "b"}[kind]
  status, err, _ = _cli(capsys, "--mode=predict", f"--workdir={workdir}", f"--input={scan}",
                        f"--output={output}", "--figures=none")
  assert {p: _digest(root / p) for p in before} == before
  assert sorted(os.listdir(workdir)) == wd_before
  if kind in ("odd_name", "nested_new"):
    assert status == 0, err
    with np.load(os.path.join(output, "scan.npz")) as d:
      assert d["pred"].shape == (1, 40, 32)
  else:
    _assert_one_line_error(status, err, ["--output", str(output)[:50], "/proc"])


# ---- the real entry point: exit codes -----------------------------------------------------------

def _main(*args, **kw):
  return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=240, **kw)


def test_exit_codes_of_the_entry_point(trained_workdir, tmp_path):
  workdir, _ = trained_workdir
  r = _main("--config=configs/tiny.py", "--config.train.batch_size=0", f"--workdir={tmp_path}/w")
  assert r.returncode == 2 and r.stderr == ("error: --config.train.batch_size=0: expected an "
                                            "integer >= 1\n")
  assert not (tmp_path / "w").exists()
  np.savez(tmp_path / "scan.npz", images=np.zeros((1, 40, 32), np.uint8))
  r = _main("--mode=predict", f"--workdir={workdir}", f"--input={tmp_path}/scan.npz",
            f"--output={tmp_path}")
  assert r.returncode == 2 and r.stderr.count("\n") == 1 and "holds the input scan.npz" in r.stderr
  r = _main("--mode=predict", f"--workdir={workdir}", f"--input={tmp_path}/scan.npz",
            f"--output={tmp_path}/out", "--figures=none")
  assert r.returncode == 0 and r.stderr == "", r.stderr
  assert os.path.exists(tmp_path / "out" / "scan.npz")


def test_ctrl_c_during_training_is_one_line_and_status_130(tmp_path):
  workdir = tmp_path / "w"
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"),
                           "--config=configs/tiny.py", "--config.train.num_epochs=500",
                           f"--workdir={workdir}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 200
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(workdir / "log.csv") and len(open(workdir / "log.csv").readlines()) > 2:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130 and err == "error: interrupted\n", err[-2000:]
