"""Cache each fold model's held-out probabilities (exploration for a boundary-offset lever)."""
import sys, os, numpy as np
sys.path.insert(0, "/work/main/scripts"); sys.path.insert(0, "/work/main")
import smoothing_cv
from octseg_jax.modes import evaluate
R = "/work/campaign/runs/plateau_80_fluid_skip_wh_ema_"
for spec in sys.argv[1:]:
  recipe, name = spec.split("/")
  fold = int(name[4])
  out = f"/work/exp/offsets/cache_{recipe}_{name}.npz"
  if os.path.exists(out): continue
  folder = f"/work/exp/offsets/pair{fold}" if recipe == "noval" else None
  f = smoothing_cv.fold_scans(f"{R}{recipe}/{name}", {}, folder)
  probs = [o["probs"] for o in evaluate.predict_all(f["trained"], f["images"])]
  np.savez(out, **{f"p{i}": p.astype(np.float32) for i, p in enumerate(probs)},
           **{f"m{i}": m for i, m in enumerate(f["masks"])},
           **{f"f{i}": (x if x is not None else np.zeros(0)) for i, x in enumerate(f["fluid"])},
           subjects=np.array(f["subjects"]), pixel_um=f["pixel_um"], n=len(probs))
  print(spec, len(probs), probs[0].shape, flush=True)
