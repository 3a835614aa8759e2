"""The progress display: bounded output when not a terminal, final line, redraw on a terminal."""

import io

from octseg_jax.runtime.progress import Progress, format_seconds


def test_non_terminal_output_is_bounded_and_ends_with_the_total():
  out = io.StringIO()
  with Progress(1000, "predict", unit="scan", stream=out) as p:
    for _ in range(1000):
      p.update()
  lines = out.getvalue().splitlines()
  # every 100 items (9 lines: 100..900; 1000 is the closing line) + the closing line
  assert len(lines) == 10
  assert lines[0].startswith("predict: 100/1000 scans")
  assert "eta" in lines[0]
  assert lines[-1].startswith("predict: 1000/1000 scans")
  assert "eta" not in lines[-1]


def test_small_totals_print_each_item_and_close_once():
  out = io.StringIO()
  p = Progress(3, "explain", unit="scan", stream=out)
  for _ in range(3):
    p.update()
  p.close()
  p.close()
  assert [l.split(",")[0] for l in out.getvalue().splitlines()] == [
      "explain: 1/3 scans", "explain: 2/3 scans", "explain: 3/3 scans"]
  out = io.StringIO()                       # 11 (a Duke subject's B-scans): every 2nd, not each
  with Progress(11, "eval: score", unit="scan", stream=out) as p:
    for _ in range(11):
      p.update()
  assert [l.split(",")[0].split(" ")[-2] for l in out.getvalue().splitlines()] == [
      "2/11", "4/11", "6/11", "8/11", "10/11", "11/11"]


class _Tty(io.StringIO):
  def isatty(self):
    return True


def test_terminal_redraws_in_place():
  out = _Tty()
  with Progress(5, "epoch 1", unit="step", stream=out, min_seconds=0.0) as p:
    for _ in range(5):
      p.update()
  text = out.getvalue()
  assert text.count("\n") == 1 and text.endswith("\n")
  assert text.count("\r") == 6   # 5 redraws + the closing one
  assert "epoch 1: 5/5 steps" in text


def test_format_seconds():
  assert format_seconds(42.4) == "42s"
  assert format_seconds(185) == "3m05s"
  assert format_seconds(3720) == "1h02m"
