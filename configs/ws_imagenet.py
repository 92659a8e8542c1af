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
train_examples (0: all of ImageNet's; a subset's size makes epochs, the lr
schedule and the cadence count on it, as experiments/easy_hard.py does),
batch (0: the authors' 256; runlocal 16, M3 6), weight_decay (default 0),
runlocal (2 epochs of the fake ImageNet at small size on prepared data). The sweep is optimizer x noise (0, 0.5) for the
chosen model.

Values of the authors' released trainer (weak_and_strong/imagenet_main.py
and optimizers/) were read in full; of the paper only the abstract, which
names the models, M3 ("partitions a mini-batch into 3 groups") and the
memorization finding.

  setting           | paper (abstract) | authors' code             | cgjax value                   | source
  models            | ResNet, VGG,     | ResNet-18, VGG-13-BN,     | the same (no aux logits)      | code
                    | Inception        | Inception-V3, no aux      |                               |
  epochs, batch, lr | -                | 90, 256, 0.1 (never       | the same                      | code
                    |                  | scaled)                   |                               |
  BatchNorm         | -                | DDP without SyncBN: each  | bn_group_size = 256 / 8 = 32  | code (8 GPUs
                    |                  | GPU's 256 / 8 examples    | whatever this run's devices   | assumed)
  lr schedule       | -                | ResNet: StepLR(30), VGG / | the same, stepped per epoch   | code
                    |                  | Inception: Cosine-        | (optim.schedule_every = steps |
                    |                  | AnnealingLR(90), stepped  | per epoch)                    |
                    |                  | once per epoch            |                               |
  SGD               | -                | momentum 0.9              | the same                      | code
  M3                | 3 groups of a    | median of the gradients   | batch 768 in 3 strided groups | code; equal update
                    | mini-batch       | of 3 consecutive          | of 256, one update a step     | on the same
                    |                  | minibatches at the same   | (see cgjax/aggregators.py)    | minibatches (tested)
                    |                  | weights, an update every  |                               |
                    |                  | 3rd step                  |                               |
  RM3 / RA3         | -                | median / mean of this     | the same, no update before    | code
                    |                  | and the last 2 gradients; | the 3rd gradient (optim.      |
                    |                  | no update before the 3rd  | rm3_warmup='skip')            |
  momentum, M3 etc. | -                | 0 (unstable with)         | 0                             | code
  weight decay      | -                | 1e-4 default, 0 in the    | 0 (weight_decay=1e-4 for the  | code README runs
                    |                  | README's runs; added      | default), before the median   |
                    |                  | before the median         |                               |
  label noise       | -                | uniform class w.p. f;     | the same; sweep 0 and 0.5     | code
                    |                  | corrupt = label changed   |                               |
  augmentation      | -                | none: resize 256 + crop   | the same                      | code
                    |                  | 224; Inception 299 + 299  |                               |
  input norm.       | -                | ImageNet mean/std         | the same                      | code
  dropout           | -                | torchvision's (VGG 0.5,   | the same                      | torchvision models
                    |                  | Inception 0.5)            |                               |
  evaluation        | -                | 50K clean, 50K noisy, 50K | the same, every epoch         | code
                    |                  | mixed train + validation, |                               |
                    |                  | per epoch, eval mode      |                               |
  easy examples     | -                | correct after 2 epochs of | the same, over every training | code README
                    |                  | SGD, whole training set   | example (learning.learned_at) |
                    |                  | (~600K); 500K train /     | 100K held out, up to 500K     |
                    |                  | 100K test from them       | trained on; epochs on them    |
"""
from cgjax.configs import common

MODELS = ('resnet18', 'vgg13_bn', 'inception_v3')
OPTIMIZERS = ('sgd', 'm3', 'rm3', 'ra3')
BATCH = 256
ARG = dict(model='resnet18', optimizer='sgd', noise=0.0, seed=0, epochs=90,
           train_examples=0, batch=0, weight_decay=0.0, runlocal=False)
# The trainer's DistributedDataParallel over 8 GPUs, without SyncBN: each
# GPU normalizes its 256 / 8 examples.
GPUS = 8


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
  base = a.batch or ((6 if a.optimizer == 'm3' else 16) if a.runlocal
                     else BATCH)
  batch = 3 * base if a.optimizer == 'm3' else base
  c = common.imagenet_config(a, batch=batch, lr=0.1,
                             momentum=0.9 if a.optimizer == 'sgd' else 0.0,
                             probe_m=40_000)
  common.weak_and_strong_optim(c, a, common.epoch_steps(a, batch))
  if a.model == 'inception_v3':
    c.data.crop_fraction = 1.0
  if a.runlocal:
    common.imagenet_runlocal(c, a, batch)
  # Each GPU's share of a minibatch (of each M3 group). Not in smoke runs:
  # 16 / 8 = 2 examples of 1 x 1 maps at the last stage (32 px) diverge.
  c.bn_group_size = 0 if a.runlocal else base // GPUS
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
  the most examples trained on (the authors': 100K and 500K of ~600K easy
  examples; fewer where a subset has fewer), the subset runs' arg (the
  driver adds train_examples, so that epochs count on the subset) and
  their overrides."""
  if common.parse_arg(arg, **ARG).runlocal:
    # The fake ImageNet's 32 training images: subsets of a few examples at
    # batch 2.
    return {'select_arg': 'optimizer=sgd', 'heldout_size': 2, 'train_size': 0,
            'subset_arg': 'batch=2', 'overrides': {'measurements.probe.m': 2}}
  return {'select_arg': 'optimizer=sgd,epochs=2', 'heldout_size': 100_000,
          'train_size': 500_000, 'subset_arg': '', 'overrides': {}}
