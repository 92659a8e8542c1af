"""The m-coherence paper's ImageNet study (Chatterjee & Zielinski 2020).

    python launch.py --config configs/mcoherence_imagenet.py:noise=0.5 \
        --config.data.data_dir=DATA_DIR --workdir runs/mc_r18_noise50
    python launch.py --config configs/mcoherence_imagenet.py:model=inception_v3 \
        --sweep --print-commands      # the whole grid, one command per run

arg (comma-separated): model ('resnet18', 'inception_v3', 'efficientnet_b0'),
noise (default 0), seed, probe (examples per probe set: 40000, or 80000),
epochs, train_examples (0: all of ImageNet's; epochs are counted on it),
runlocal (2 epochs of the fake ImageNet, 4 steps, at small size on prepared
data). The sweep is the noise grid 0, 0.25, 0.5, 0.75, 1 for the chosen
model.

The authors' public code has no m-coherence code, and only the abstracts of
the paper's two versions could be read: every value below but the models
named there and the random-label finding comes from secondary notes
("unverified": not checked against the paper's text) or is cgjax's choice.

  setting          | paper (abstract)  | authors' code | cgjax value                      | source
  model            | "ResNet and       | none          | ResNet-18 (Inception-V3,         | unverified: ResNet-18 main,
                   | Inception" (v1),  |               | EfficientNet-B0: model=...)      | Inception-V3 check
                   | "ResNet and       |               |                                  |
                   | EfficientNet"     |               |                                  |
  label noise      | random labels     | none          | 0, 0.25, 0.5, 0.75, 1 (uniform   | unverified (25/75%:
                   |                   |               | class)                           | appendix)
  optimizer        | not in abstract   | none          | SGD, momentum 0.9                | unverified
  batch            | not in abstract   | none          | 4096                             | unverified
  lr schedule      | not in abstract   | none          | 0.1 x 4096/256 = 1.6, linear     | unverified (Goyal et
                   |                   |               | warm-up 5 epochs (per step), /10 | al.)
                   |                   |               | at epochs 30, 60, 80 of 90       |
  BatchNorm        | not in abstract   | none          | global batch (bn_group_size=0)   | choice
  weight decay,    | not in abstract   | none          | none, none (resize + center      | unverified (so that
  augmentation     |                   |               | crop 0.875)                      | memorization shows)
  input norm.      | -                 | -             | ImageNet mean/std                | torchvision references
  dropout          | -                 | -             | model's reference (Inception     | choice
                   |                   |               | 0.5, EfficientNet 0.2 + stoch.   |
                   |                   |               | depth 0.2)                       |
  probe sample     | not in abstract   | none          | 40,000 per set (probe=80000)     | unverified (80K:
                   |                   |               |                                  | appendix)
  probe sets       | -                 | W&S trainer's | clean, noisy, mixed, test; fixed | authors' W&S code's
                   |                   | eval sets     | all run                          | split, extended
  probe mode       | -                 | W&S eval mode | BatchNorm running statistics     | authors' W&S code
                   |                   |               | (probe.bn='running')             |
  per-layer series | not in abstract   | none          | first conv, an intermediate      | unverified (named
                   |                   |               | layer, the final dense layer     | layers of the figures)
  cadence          | -                 | -             | every epoch + 20 log-spaced      | choice (early
                   |                   |               | steps                            | transient)
"""
import ml_collections

from cgjax.configs import common

MODELS = ('resnet18', 'inception_v3', 'efficientnet_b0')


def get_config(arg=None):
  a = common.parse_arg(arg, model='resnet18', noise=0.0, seed=0, probe=40_000,
                       epochs=90, train_examples=0, runlocal=False)
  if a.model not in MODELS:
    raise ValueError(f'model={a.model!r}: the m-coherence paper used '
                     f'{", ".join(MODELS)}')
  return build(a, a.model)


def build(a, model):
  """The paper's training and measurements for `model` (also ResNet-50's)."""
  a = ml_collections.ConfigDict({**a, 'model': model})
  batch = 16 if a.runlocal else 4096
  # Goyal et al.'s linear scaling: 0.1 per 256 examples.
  c = common.imagenet_config(a, batch=batch, lr=0.1 * batch / 256,
                             momentum=0.9, probe_m=a.probe)
  c.optim.update(schedule='step',
                 warmup_steps=5 * common.epoch_steps(a, batch),
                 step_boundaries=(30 / 90, 60 / 90, 80 / 90), step_factor=0.1)
  if a.runlocal:
    common.imagenet_runlocal(c, a, batch)
    # Held constant: a 5-epoch warm-up would leave 2 epochs at a tiny lr.
    c.optim.update(schedule='constant', warmup_steps=0)
  return c


def get_sweep(arg=None):
  del arg  # the same grid for every model (and at runlocal size)
  return [{'noise.rate': rate} for rate in (0.0, 0.25, 0.5, 0.75, 1.0)]
