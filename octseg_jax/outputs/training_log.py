"""A training workdir's log.csv, one row per epoch (written by training/hooks.py MetricsLog):
the one reader, as rows of strings or as numeric columns."""

import csv
import io
import os
from typing import Dict, List, Sequence

import numpy as np

from octseg_jax.layout import LOG_FILE


def read_rows(path: str, missing_ok: bool = True) -> List[Dict[str, str]]:
  """The rows of a log.csv as dicts of strings (column name -> cell); [] when the file holds no
  row, or does not exist and `missing_ok` (else FileNotFoundError: a committed log that must
  be there)."""
  if not os.path.exists(path):
    if missing_ok:
      return []
    raise FileNotFoundError(path)
  with open(path, newline="") as f:
    return parse_rows(f.read())


def parse_rows(text: str) -> List[Dict[str, str]]:
  """The rows of a log.csv's text (such as a committed version of it) as read_rows gives them."""
  return list(csv.DictReader(io.StringIO(text, newline="")))


def workdir_rows(workdir: str) -> List[Dict[str, str]]:
  """read_rows of WORKDIR/log.csv."""
  return read_rows(os.path.join(workdir, LOG_FILE))


def as_columns(rows: Sequence[Dict[str, str]]) -> Dict[str, np.ndarray]:
  """{column: float array} of log rows; empty or non-numeric cells become NaN."""
  def number(v):
    try:
      return float(v)
    except (TypeError, ValueError):
      return np.nan

  names = list(rows[0]) if rows else []
  return {n: np.array([number(r.get(n)) for r in rows]) for n in names}
