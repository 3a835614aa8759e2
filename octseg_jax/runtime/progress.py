"""One progress display for long loops (scans in predict/explain/eval, steps in an epoch).

On a terminal the line is redrawn in place (count, rate, ETA); when output is not a terminal
(a log file, CI, a pipe) it prints a bounded number of lines: one every `every` items (default:
about 10 lines per loop) and one at the end.
"""

import sys
import time
from typing import Optional, TextIO


def format_seconds(seconds: float) -> str:
  """'42s', '3m05s', '1h02m'."""
  seconds = max(0.0, float(seconds))
  if seconds < 60:
    return f"{seconds:.0f}s"
  if seconds < 3600:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
  return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class Progress:
  """Counts items done out of `total`; `update()` after each, `close()` at the end.

  Args:
    total: number of items.
    desc: what is being done ('predict', 'epoch 3').
    unit: item name for the rate ('scan', 'step').
    every: lines printed every `every` items when not on a terminal (default: total / 10
      rounded up, so at most 10 lines before the closing one).
    stream: where to print (default stdout).
    min_seconds: on a terminal, redraw at most this often.
    leave: False erases the line at the end on a terminal and prints no closing line elsewhere
      (for per-step progress that a summary line follows).
  """

  def __init__(self, total: int, desc: str, unit: str = "item", every: Optional[int] = None,
               stream: Optional[TextIO] = None, min_seconds: float = 0.2,
               leave: bool = True):
    self.total, self.desc, self.unit = max(int(total), 0), desc, unit
    self.stream = stream if stream is not None else sys.stdout
    self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
    self.every = max(1, int(every) if every else -(-self.total // 10))
    self.min_seconds = min_seconds
    self.leave = leave
    self.done = 0
    self.start = time.perf_counter()
    self._last_draw = 0.0
    self._closed = False

  def line(self) -> str:
    elapsed = time.perf_counter() - self.start
    rate = self.done / elapsed if elapsed > 0 else 0.0
    text = f"{self.desc}: {self.done}/{self.total} {self.unit}{'' if self.total == 1 else 's'}"
    if self.done:
      text += f", {rate:.2f} {self.unit}/s" if rate >= 1 else f", {1 / rate:.1f} s/{self.unit}"
      if self.done < self.total:
        text += f", eta {format_seconds((self.total - self.done) / rate)}"
      else:
        text += f", {format_seconds(elapsed)}"
    return text

  def update(self, n: int = 1) -> None:
    self.done = min(self.total, self.done + n) if self.total else self.done + n
    now = time.perf_counter()
    if self.tty:
      if now - self._last_draw >= self.min_seconds or self.done >= self.total:
        self.stream.write("\r" + self.line() + "\033[K")
        self.stream.flush()
        self._last_draw = now
    elif self.done % self.every == 0 and self.done < self.total:
      print(self.line(), file=self.stream, flush=True)

  def close(self) -> None:
    """Prints the final line once (a newline after the in-place line on a terminal)."""
    if self._closed:
      return
    self._closed = True
    if not self.leave:
      if self.tty:
        self.stream.write("\r\033[K")
    elif self.tty:
      self.stream.write("\r" + self.line() + "\033[K\n")
    else:
      self.stream.write(self.line() + "\n")
    self.stream.flush()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False
