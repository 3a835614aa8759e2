"""The import rules of docs/architecture.md, read from the code's own imports (ast): each
octseg_jax layer imports only the layers below it, the package never imports the top level
(configs/, scripts/, benchmarks/, tests), configs/ imports only octseg_jax.config and each
other, the pure-math layers do no I/O, and the picture in docs/architecture.md lists the layers
in the order this test enforces; and every function is under 60 lines."""

import ast
import os
import re

from conftest import ROOT

# Top to bottom, as in docs/architecture.md; anatomy, errors and layout are the ground floor.
LAYERS = ("modes", "training", "serving", "config", "runtime", "outputs", "cam", "learning",
          "models", "geometry", "data", "anatomy", "errors", "layout")
TOP_LEVEL = ("configs", "scripts", "benchmarks", "tests", "main", "conftest")


def package_of(path: str) -> list:
  """The package a file is in, as names: the folders from the last 'octseg_jax' on."""
  parts = os.path.dirname(path).split(os.sep)
  if "octseg_jax" not in parts:
    return parts[-1:]
  return parts[len(parts) - 1 - parts[::-1].index("octseg_jax"):]


def imported_modules(path: str):
  """(line, dotted name) of every import in a file, lazy ones inside functions included;
  relative imports resolved against the file's package, and `from octseg_jax import X` read
  as octseg_jax.X."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from ((node.lineno, a.name) for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      module = node.module or ""
      if node.level:                     # from . import x, from ..serving import y
        package = package_of(path)
        module = ".".join(package[:len(package) - node.level + 1] + ([module] if module else []))
      if module == "octseg_jax":
        yield from ((node.lineno, f"octseg_jax.{a.name}") for a in node.names)
      else:
        yield node.lineno, module


def python_files(folder: str, root: str = None):
  for here, _, files in os.walk(os.path.join(root or ROOT, folder)):
    yield from (os.path.join(here, f) for f in sorted(files) if f.endswith(".py"))


def layer_of(path_or_module: str) -> str:
  parts = path_or_module.replace(os.sep, ".").removesuffix(".py").split(".")
  return parts[parts.index("octseg_jax") + 1]


def violations():
  out = []
  for path in python_files("octseg_jax"):
    if os.path.basename(path) == "__init__.py" and os.path.dirname(path).endswith("octseg_jax"):
      continue
    here = LAYERS.index(layer_of(os.path.relpath(path, ROOT)))
    for line, module in imported_modules(path):
      where = f"{os.path.relpath(path, ROOT)}:{line} imports {module}"
      if module.split(".")[0] in TOP_LEVEL:
        out.append(f"{where} (the package never imports the top level)")
      elif module.startswith("octseg_jax."):
        there = LAYERS.index(layer_of(module))
        if there < here:
          out.append(f"{where} (a layer above)")
  return out


def test_every_package_module_belongs_to_a_layer():
  found = {layer_of(os.path.relpath(p, ROOT)) for p in python_files("octseg_jax")
           if os.path.relpath(p, ROOT) != os.path.join("octseg_jax", "__init__.py")}
  assert found == set(LAYERS)


def test_layers_import_only_layers_below_them():
  assert violations() == []


def test_the_rule_finds_an_upward_import(tmp_path, monkeypatch):
  """The check itself can fail: a learning module importing serving is reported."""
  fake = tmp_path / "octseg_jax" / "learning"
  fake.mkdir(parents=True)
  (fake / "bad.py").write_text("def f():\n  from octseg_jax.serving import inference\n"
                                "from octseg_jax import modes\nfrom ..training import train\n"
                                "from . import losses\nfrom .. import anatomy\n")
  (tmp_path / "octseg_jax" / "__init__.py").write_text("")
  monkeypatch.setattr(__import__(__name__), "ROOT", str(tmp_path))
  assert sorted(violations()) == [
      f"octseg_jax/learning/bad.py:{line} imports {module} (a layer above)"
      for line, module in ((2, "octseg_jax.serving"), (3, "octseg_jax.modes"),
                           (4, "octseg_jax.training"))]


PURE = ("models", "geometry", "learning", "cam", os.path.join("data", "preprocessing.py"))
IO_NAMES = {"open", "print", "input"}
IO_ATTRIBUTES = {"save", "savez", "savez_compressed", "load", "loadtxt", "savetxt", "tofile",
                 "fromfile", "write_text", "write_bytes", "read_text", "read_bytes", "print"}
IO_MODULES = {"os", "sys", "io", "shutil", "glob", "json", "csv", "pickle", "pathlib",
              "tempfile", "subprocess", "logging", "absl", "orbax", "tensorboardX", "matplotlib",
              "PIL", "imageio", "scipy.io"}


def io_in_pure_math(root=None):
  """'path:line what' for each call of open/print/input and each import of a file, printing or
  figure module in the pure-math modules (PURE)."""
  out = []
  for folder in PURE:
    paths = [os.path.join(root or ROOT, "octseg_jax", folder)] if folder.endswith(".py") \
        else python_files(os.path.join("octseg_jax", folder), root)
    for path in paths:
      with open(path) as f:
        tree = ast.parse(f.read(), path)
      where = os.path.relpath(path, root or ROOT)
      calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
      out += [f"{where}:{n.lineno} calls {n.func.id}" for n in calls
              if isinstance(n.func, ast.Name) and n.func.id in IO_NAMES]
      out += [f"{where}:{n.lineno} calls .{n.func.attr}" for n in calls   # np.save, debug.print
              if isinstance(n.func, ast.Attribute) and n.func.attr in IO_ATTRIBUTES]
      names = list(imported_modules(path)) + [            # and from scipy import io
          (n.lineno, f"{n.module}.{a.name}") for n in ast.walk(tree)
          if isinstance(n, ast.ImportFrom) and n.module and not n.level for a in n.names]
      out += sorted({f"{where}:{line} imports {m}" for line, m in names
                     if m.split(".")[0] in IO_MODULES or ".".join(m.split(".")[:2]) in IO_MODULES})
  return out


def test_pure_math_does_no_io():
  assert io_in_pure_math() == []


def test_the_io_rule_finds_a_print_and_a_file_module(tmp_path):
  for folder in ("models", "geometry", "learning", "cam", "data"):
    (tmp_path / "octseg_jax" / folder).mkdir(parents=True)
  (tmp_path / "octseg_jax" / "data" / "preprocessing.py").write_text("x = 1\n")
  (tmp_path / "octseg_jax" / "geometry" / "bad.py").write_text(
      "import numpy as np\ndef f():\n  print(1)\n  import os.path\n  np.save('x', 1)\n"
      "  from scipy import io\n  from scipy import ndimage\n")
  assert sorted(io_in_pure_math(str(tmp_path))) == [
      "octseg_jax/geometry/bad.py:3 calls print", "octseg_jax/geometry/bad.py:4 imports os.path",
      "octseg_jax/geometry/bad.py:5 calls .save", "octseg_jax/geometry/bad.py:6 imports scipy.io"]


def test_configs_import_only_the_schema_and_each_other():
  for path in python_files("configs"):
    for line, module in imported_modules(path):
      assert module in ("ml_collections", "configs", "octseg_jax.config") or \
          module.startswith("configs."), f"{path}:{line} imports {module}"


def test_the_architecture_picture_lists_the_layers_in_order():
  with open(os.path.join(ROOT, "docs", "architecture.md")) as f:
    picture = f.read().split("```")[1]
  listed = re.findall(r"^  (\w+)/", picture, re.M)
  assert tuple(listed) == LAYERS[:-3]
  assert "anatomy.py  errors.py  layout.py" in picture


MAX_FUNCTION_LINES = 59     # "functions under 60 lines", docstring and decorators included


def long_functions(folders=("octseg_jax", "configs", "scripts", "benchmarks", "tests"),
                   root=None):
  """'path:line name (N lines)' for every function or method of N > MAX_FUNCTION_LINES lines."""
  root = root or ROOT
  paths = [p for folder in folders for p in python_files(folder, root)]
  paths += [os.path.join(root, "main.py")] if os.path.exists(os.path.join(root, "main.py")) else []
  out = []
  for path in paths:
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        lines = node.end_lineno - first + 1
        if lines > MAX_FUNCTION_LINES:
          out.append(f"{os.path.relpath(path, root)}:{node.lineno} {node.name} ({lines} lines)")
  return out


def test_functions_are_under_60_lines():
  assert long_functions() == []


def test_the_length_rule_finds_a_long_function(tmp_path):
  (tmp_path / "scripts").mkdir()
  body = "".join(f"  x{i} = {i}\n" for i in range(59))
  (tmp_path / "scripts" / "long.py").write_text(f"def short():\n  pass\n\n\ndef f():\n{body}")
  assert long_functions(("scripts",), str(tmp_path)) == ["scripts/long.py:5 f (60 lines)"]
