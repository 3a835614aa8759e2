"""The paper's configuration on the Duke DME data: SegNet 64..512, 216x500 crop resized to
256x256, /255 normalisation, random 80/20 split of B-scans, batch 32, Adam 1e-3, 100 epochs;
explained as in the paper (Grad-CAM at dec0_conv1 and the head, its Table 3).

Switch to our subject-wise split with --config.data.split=subject.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.data.source = "duke"
  c.data.recipe.band_height = 216
  c.data.recipe.resize_to = (256, 256)
  c.data.recipe.normalisation = "divide255"
  c.data.split = "random"
  c.data.augment.flip = False
  c.data.augment.max_shift = 0
  c.data.augment.intensity = False
  c.explain.method = "gradcam"
  c.explain.layers = ("dec0_conv1", "head")
  return c
