"""The m-coherence paper's ImageNet study (Chatterjee & Zielinski 2020).

    python launch.py --config configs/mcoherence_imagenet.py:noise=0.5 \
        --config.data.data_dir=DATA_DIR --workdir runs/mc_r18_noise50
    python launch.py --config configs/mcoherence_imagenet.py:model=inception_v3 \
        --sweep --print-commands      # the whole grid, one command per run

arg (comma-separated): model ('resnet18', the main model; 'inception_v3', the
check; 'efficientnet_b0', the later version's), noise (default 0), seed,
probe (examples per probe set: 40000, or 80000 as in the appendix), epochs,
runlocal (4 steps at small size on prepared, e.g. fake, data). The sweep is
the paper's noise grid 0, 0.25, 0.5, 0.75, 1 for the chosen model.

  paper setting                | cgjax value                              | source
  model                        | ResNet-18 (Inception-V3, EfficientNet-B0) | paper; later version
  label noise                  | 0, 0.25, 0.5, 0.75, 1 (uniform class)     | paper (25/75% appendix)
  optimizer                    | SGD, momentum 0.9                         | paper
  batch                        | 4096                                      | paper
  lr schedule                  | 0.1 x 4096/256 = 1.6, linear warm-up 5     | Goyal et al., as the
                               | epochs, /10 at epochs 30, 60, 80 of 90    | paper cites
  weight decay, augmentation   | none, none (resize + center crop 0.875)   | paper (memorization)
  input normalization          | ImageNet mean/std                         | torchvision references
  dropout                      | model's reference (Inception 0.5,         | not stated: choice
                               | EfficientNet 0.2 + stochastic depth 0.2)  |
  probe sample                 | 40,000 per set (80,000: probe=80000)      | paper (appendix)
  probe sets                   | clean, noisy, mixed, test; fixed all run  | authors' follow-up code
  probe mode                   | eval (BatchNorm running statistics)       | authors' follow-up code
  per-layer series             | first conv, an intermediate layer, the    | paper's figures
                               | final dense layer (`probe.layers`)        |
  measurement cadence          | every epoch + 20 log-spaced steps         | choice (early transient)
"""
import ml_collections

from cgjax.configs import common

MODELS = ('resnet18', 'inception_v3', 'efficientnet_b0')


def get_config(arg=None):
  a = common.parse_arg(arg, model='resnet18', noise=0.0, seed=0, probe=40_000,
                       epochs=90, runlocal=False)
  if a.model not in MODELS:
    raise ValueError(f'model={a.model!r}: the m-coherence paper used '
                     f'{", ".join(MODELS)}')
  return build(a, a.model)


def build(a, model):
  """The paper's training and measurements for `model` (also ResNet-50's)."""
  a = ml_collections.ConfigDict({**a, 'model': model})
  c = common.imagenet_config(a, batch=4096, lr=0.1 * 4096 / 256,
                             momentum=0.9, probe_m=a.probe)
  steps_per_epoch = common.IMAGENET_TRAIN_EXAMPLES // c.batch_size
  c.optim.update(schedule='step', warmup_steps=5 * steps_per_epoch,
                 step_boundaries=(30 / 90, 60 / 90, 80 / 90), step_factor=0.1)
  if a.runlocal:
    common.imagenet_runlocal(c, model)
    c.optim.lr = 0.1 * c.batch_size / 256  # Goyal et al.'s rule at batch 16
  return c


def get_sweep(arg=None):
  del arg  # the same grid for every model (and at runlocal size)
  return [{'noise.rate': rate} for rate in (0.0, 0.25, 0.5, 0.75, 1.0)]
