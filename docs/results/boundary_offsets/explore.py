"""Boundary offsets (rows) added to the smoothed ordered boundaries, chosen leave-one-fold-out."""
import sys, glob, json, numpy as np
sys.path.insert(0, "/work/main")
from octseg_jax.geometry import boundaries as geom
SD = 6.0
GRID = np.round(np.arange(-1.5, 1.51, 0.25), 2)

def load(path):
  z = np.load(path)
  n = int(z["n"])
  scans = []
  for i in range(n):
    p, m = z[f"p{i}"], z[f"m{i}"]
    labels, _, _ = geom.predicted_geometry(p, 0.0)
    b = geom.smooth_boundaries(geom.boundaries_from_labels(labels, ignore_unknown=False), SD)
    known = np.isfinite(geom.boundaries_from_labels(labels, ignore_unknown=False)).all(axis=0)
    scans.append((labels, b, known, m))
  return scans

def render(scan, delta):
  labels, b, known, m = scan
  shifted = np.maximum.accumulate(b + delta[:, None], axis=0)
  red = geom.labels_from_boundaries(shifted, labels.shape[0])
  return np.where(known[None, :], red, labels)

def dice(scans, delta):
  inter = np.zeros(8); ps = np.zeros(8); ts = np.zeros(8)
  for s in scans:
    pred, m = render(s, delta), s[3]
    v = m != 255
    for k in range(1, 8):
      a, t = (pred == k) & v, (m == k) & v
      inter[k] += (a & t).sum(); ps[k] += a.sum(); ts[k] += t.sum()
  d = 2 * inter[1:] / (ps[1:] + ts[1:])
  return d.mean(), d

def descend(folds, sweeps=2):
  delta = np.zeros(8)
  memo = {}
  def obj(dl):
    key = tuple(dl)
    if key not in memo:
      memo[key] = np.mean([dice(f, dl)[0] for f in folds])
    return memo[key]
  for _ in range(sweeps):
    for k in range(8):
      best = max(GRID, key=lambda g: obj(np.concatenate([delta[:k], [g], delta[k + 1:]])))
      delta[k] = best
  return delta

if __name__ == "__main__":
  sets = {}
  for tag in sys.argv[1:]:
    paths = sorted(glob.glob(f"cache_{tag}_fold*.npz"))
    sets[tag] = {p.split("_")[-2]: load(p) for p in paths}
    print(tag, list(sets[tag]), flush=True)
  out = {}
  for tag, folds in sets.items():
    names = list(folds)
    base = {f: dice(folds[f], np.zeros(8))[0] for f in names}
    print(tag, "sd6 base", {f: round(v, 4) for f, v in base.items()}, flush=True)
    all_delta = descend([folds[f] for f in names])
    print(tag, "delta on all folds", all_delta.tolist(), flush=True)
    res = {}
    for f in names:
      d = descend([folds[g] for g in names if g != f])
      after, per = dice(folds[f], d)
      res[f] = {"delta": d.tolist(), "base": base[f], "after": after, "gain": after - base[f]}
      print(tag, f, "delta", d.tolist(),
            f"{base[f]:.4f} -> {after:.4f} ({after-base[f]:+.4f})", flush=True)
    out[tag] = {"all": all_delta.tolist(), "lofo": res,
                "mean_gain": float(np.mean([r["gain"] for r in res.values()]))}
    print(tag, "mean LOFO gain", out[tag]["mean_gain"], flush=True)
  json.dump(out, open("explore_" + "_".join(sys.argv[1:]) + ".json", "w"), indent=1)
