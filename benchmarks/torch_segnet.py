"""The same SegNet in PyTorch, timed the way `--mode=benchmark` times ours (optional).

Not imported by octseg_jax; it imports only its pure-Python timer (octseg_jax/runtime/timing.py).
Exits with a message when torch is absent.

  python benchmarks/torch_segnet.py --widths 64,128,256,512,512 --batch 4 --size 256,256
  python benchmarks/torch_segnet.py ... --upsample transpose --skip   # the paper's variant

Prints one JSON line: device, torch version, parameters, median train-step time (Adam step,
hybrid CE + 0.5 (1 - global soft Dice) loss, BatchNorm in training mode), images/s, and the
median forward time per image (eval mode, no grad).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.runtime.timing import time_fn  # noqa: E402  (pure Python: no JAX here)


def build(torch, widths, num_classes, upsample, skip):
  nn = torch.nn

  def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))

  class SegNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.enc = nn.ModuleList()
      cin = 1
      for w in widths:
        self.enc.append(nn.Sequential(block(cin, w), block(w, w)))
        cin = w
      self.pool = nn.MaxPool2d(2, return_indices=True)
      self.unpool = nn.MaxUnpool2d(2)
      self.up = nn.ModuleList()
      self.dec = nn.ModuleList()
      for i in reversed(range(len(widths))):
        if upsample == "transpose":
          self.up.append(nn.ConvTranspose2d(cin, widths[i], 2, stride=2))
          cin = widths[i]
        c = cin + (widths[i] if skip else 0)
        out = widths[max(i - 1, 0)]
        self.dec.append(nn.Sequential(block(c, widths[i]), block(widths[i], out)))
        cin = out
      self.head = nn.Conv2d(cin, num_classes, 1)

    def forward(self, x):
      skips, idx = [], []
      for e in self.enc:
        x = e(x)
        skips.append(x)
        x, i = self.pool(x)
        idx.append(i)
      for n, d in enumerate(self.dec):
        level = len(widths) - 1 - n
        x = self.up[n](x) if upsample == "transpose" else self.unpool(x, idx[level])
        if skip:
          x = torch.cat([x, skips[level]], 1)
        x = d(x)
      return self.head(x)

  return SegNet()


def parse_args(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--widths", default="64,128,256,512,512")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--size", default="256,256")
  p.add_argument("--upsample", default="unpool", choices=("unpool", "transpose"))
  p.add_argument("--skip", action="store_true")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--threads", type=int, default=0)
  p.add_argument("--device", default="auto")
  return p.parse_args(argv)


def train_and_forward(torch, model, x, y, device: str):
  """(one training step: hybrid loss CE + 0.5 (1 - Dice), Adam; one no-grad forward pass)."""
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)

  def sync():
    if device == "cuda":
      torch.cuda.synchronize()

  def step():
    opt.zero_grad(set_to_none=True)
    logits = model(x)
    ce = torch.nn.functional.cross_entropy(logits, y)
    probs = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(y, 8).permute(0, 3, 1, 2).float()
    dice = 2 * (probs * onehot).sum() / (probs.sum() + onehot.sum())
    (ce + 0.5 * (1 - dice)).backward()
    opt.step()
    sync()

  def forward():
    with torch.no_grad():
      model(x)
    sync()

  return step, forward


def main():
  a = parse_args()
  try:
    import torch
  except ImportError:
    print("torch is not installed: nothing to compare (pip install torch)")
    return 0
  if a.threads:
    torch.set_num_threads(a.threads)
  device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
  widths = [int(w) for w in a.widths.split(",")]
  h, w = (int(v) for v in a.size.split(","))
  model = build(torch, widths, 8, a.upsample, a.skip).to(device)
  x = torch.rand(a.batch, 1, h, w, device=device)
  y = torch.randint(0, 8, (a.batch, h, w), device=device)
  step, forward = train_and_forward(torch, model, x, y, device)
  model.train()
  step_s = time_fn(step, a.steps, a.warmup)["median_s"]
  model.eval()
  fwd_s = time_fn(forward, a.steps, a.warmup)["median_s"]
  print(json.dumps({
      "framework": "pytorch", "torch": torch.__version__, "device": device,
      "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
      "threads": torch.get_num_threads(), "widths": widths, "upsample": a.upsample,
      "skip": a.skip, "batch": a.batch, "input_shape": [h, w],
      "parameters": sum(p.numel() for p in model.parameters()),
      "train_step_s": step_s, "images_per_s": a.batch / step_s,
      "forward_per_image_s": fwd_s / a.batch}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
