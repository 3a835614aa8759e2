"""The CPU screening recipe of issue 13 (aimed at <= 15 min per fold on an idle 2-core machine):
configs/duke_cpu.py (SegNet 16..128, native resolution, subject-wise fold) trained on random
224 x 256 column crops (validation and scoring stay full width), 24 epochs with a 1-epoch
warm-up and cosine decay instead of the plateau schedule (no early stop before the end of the
cosine), a resumable checkpoint every 2 epochs. Issue 13's lever plan screened one-change
overrides of it; crops cost accuracy on fold 0, so the campaign's base is configs/duke_cpu.py
(docs/results.md)."""

from configs import duke_cpu


def get_config():
  c = duke_cpu.get_config()
  c.data.augment.crop_width = 256
  c.train.num_epochs = 24
  c.train.schedule = "cosine"
  c.train.warmup_epochs = 1
  c.train.early_stopping_patience = 24
  c.train.checkpoint_every = 2
  c.train.image_summary_every = 8
  return c
