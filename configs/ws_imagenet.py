"""The Weak-and-Strong gradient directions study on ImageNet (Zielinski,
Krishnan & Chatterjee 2020): SGD vs median-of-means M3 / RM3 and their
control RA3, under label noise; and the easy/hard study's runs.

    python launch.py --config configs/ws_imagenet.py:optimizer=rm3,noise=0.5 \
        --config.data.data_dir=DATA_DIR --workdir runs/ws_r18_rm3_noise50
    python launch.py --config configs/ws_imagenet.py:model=vgg13_bn --sweep \
        --print-commands             # optimizer x noise, one command per run
    python -m experiments.easy_hard --config configs/ws_imagenet.py \
        --workdir runs/easy_hard     # the easy/hard recipe (see there)

arg (comma-separated): model ('resnet18', 'vgg13_bn', 'inception_v3'),
optimizer ('sgd', 'm3', 'rm3', 'ra3'), noise (default 0), seed, epochs,
runlocal (4 steps at small size on prepared, e.g. fake, data). The sweep is
optimizer x noise (0, 0.5) for the chosen model.

  paper setting              | cgjax value                               | source
  models                     | ResNet-18, VGG-13-BN, Inception-V3 (no    | paper, authors' code
                             | aux logits)                               |
  epochs, batch, lr          | 90, 256, 0.1 (never scaled by batch)      | authors' code
  lr schedule                | ResNet-18: /10 at epochs 30 and 60, no    | authors' code (StepLR
                             | warm-up; VGG, Inception: cosine to 0      | 30; CosineAnnealingLR)
  SGD                        | momentum 0.9                              | authors' code
  M3                         | median of the gradients of 3 minibatches  | paper, authors' code
                             | of 256 at the same weights, one update    |
                             | per 3 batches: batch_size 768 in 3 groups |
  RM3 / RA3                  | median / mean of this and the previous    | paper, authors' code
                             | 2 batch gradients, every step             |
  momentum with M3/RM3/RA3   | 0 (unstable with momentum)                | authors' code
  weight decay               | 0 (added before the median when set)      | authors' README runs
  label noise                | uniform random class w.p. noise; sweep    | authors' README (0.5)
                             | 0 (control) and 0.5                       |
  augmentation               | none: resize 256 + center crop 224;       | authors' code default
                             | Inception resize 299 + crop 299           |
  input normalization        | ImageNet mean/std                         | authors' code
  dropout                    | VGG 0.5 (classifier), Inception 0.5       | torchvision models
  evaluation                 | 50K clean, 50K noisy, 50K mixed training  | authors' code
                             | examples and the validation set, per epoch|
  easy examples              | classified correctly after 2 epochs of    | authors' README
                             | SGD (learning.learned_at)                 |
"""
from cgjax.configs import common

MODELS = ('resnet18', 'vgg13_bn', 'inception_v3')
OPTIMIZERS = ('sgd', 'm3', 'rm3', 'ra3')
BATCH = 256
ARG = dict(model='resnet18', optimizer='sgd', noise=0.0, seed=0, epochs=90,
           runlocal=False)


def get_config(arg=None):
  a = common.parse_arg(arg, **ARG)
  if a.model not in MODELS:
    raise ValueError(f'model={a.model!r}: the Weak-and-Strong study used '
                     f'{", ".join(MODELS)}')
  if a.optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer={a.optimizer!r}; choose from '
                     f'{", ".join(OPTIMIZERS)}')
  # M3 forms each update from 3 minibatches of 256 at the same weights: one
  # batch of 768 in 3 groups, at the same lr.
  batch = 3 * BATCH if a.optimizer == 'm3' else BATCH
  c = common.imagenet_config(a, batch=batch, lr=0.1,
                             momentum=0.9 if a.optimizer == 'sgd' else 0.0,
                             probe_m=40_000)
  if a.optimizer != 'sgd':
    c.optim.update(aggregator=a.optimizer, m3_groups=3)
  if a.model == 'resnet18':
    c.optim.update(schedule='step', step_boundaries=(30 / 90, 60 / 90),
                   step_factor=0.1)
  else:
    c.optim.schedule = 'cosine'
  if a.model == 'inception_v3':
    c.data.crop_fraction = 1.0
  if a.runlocal:
    common.imagenet_runlocal(c, a.model)
    c.batch_size = 18 if a.optimizer == 'm3' else 16  # 3 groups for M3
  return c


def get_sweep(arg=None):
  del arg  # the same grid for every model (and at runlocal size)
  # The optimizer through the arg: M3 also changes the batch and momentum.
  return [{'arg': f'optimizer={name}', 'noise.rate': rate}
          for name in OPTIMIZERS for rate in (0.0, 0.5)]


def get_easy_hard(arg=None):
  """The easy/hard study's recipe (experiments/easy_hard.py): the arg of the
  selection run (2 epochs of SGD; its learning times' learned_at step writes
  the easy and hard key lists), then per subset the held-out test size and
  the training size (the authors': 100K and 500K of ~600K easy examples),
  and overrides for the subset runs."""
  if common.parse_arg(arg, **ARG).runlocal:
    # The fake ImageNet's 32 training images: subsets of a few examples.
    return {'select_arg': 'optimizer=sgd', 'heldout_size': 2, 'train_size': 0,
            'overrides': {'batch_size': 4, 'measurements.probe.m': 2}}
  return {'select_arg': 'optimizer=sgd,epochs=2', 'heldout_size': 100_000,
          'train_size': 500_000, 'overrides': {}}
