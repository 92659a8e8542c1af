"""The Weak-and-Strong study on CIFAR-10: SGD vs M3 / RM3 / RA3 under label
noise (the paper's v1 abstract reports CIFAR-10 experiments).

    python launch.py --config configs/ws_cifar10.py:optimizer=rm3,noise=0.5 \
        --config.data.data_dir=DATA_DIR --workdir runs/ws_c10_rm3_noise50
    python launch.py --config configs/ws_cifar10.py --sweep --print-commands

arg (comma-separated): model ('resnet18', 'vgg13_bn'), optimizer ('sgd',
'm3', 'rm3', 'ra3'), noise (default 0), seed, epochs, train_examples (0:
CIFAR-10's 50,000), batch (0: 128), weight_decay (default 0), runlocal (2
epochs of the fake CIFAR-10 at batch 16, M3 15, on prepared data). The sweep is
optimizer x noise (0, 0.5). Prepare the data once: `tfds build cifar10`.

The authors' released code has no CIFAR-10 trainer and the paper's text
could not be read beyond its abstract: every value is cgjax's choice,
carried over from their ImageNet trainer where one applies.

  setting         | paper (abstract) | authors' code | cgjax value                     | source
  models          | ResNet, VGG      | none for      | ResNet-18 (3x3 stem, no         | choice
                  |                  | CIFAR-10      | max-pool), VGG-13-BN (512 wide) |
  optimizers      | M3, RM3 vs SGD   | ImageNet's    | sgd (momentum 0.9), m3 (batch   | ImageNet trainer
                  |                  |               | 3 x 128 in 3 groups), rm3, ra3  |
                  |                  |               | (momentum 0, no update before   |
                  |                  |               | the 3rd gradient)               |
  batch, lr       | -                | -             | 128, 0.1                        | choice
  epochs, lr      | -                | -             | 90; ResNet StepLR(30) (/10 at   | ImageNet trainer's
  schedule        |                  |               | 30, 60), VGG cosine, per epoch  | shapes, choice
  BatchNorm       | -                | -             | global batch (one device)       | choice
  weight decay,   | -                | -             | none, none                      | choice (memorization
  augmentation    |                 |               |                                 | visible)
  label noise     | label noise      | uniform class | 0 and 0.5, uniform class        | ImageNet trainer
"""
from cgjax.configs import common

OPTIMIZERS = ('sgd', 'm3', 'rm3', 'ra3')
BATCH = 128
ARG = dict(model='resnet18', optimizer='sgd', noise=0.0, seed=0, epochs=90,
           train_examples=0, batch=0, weight_decay=0.0, runlocal=False)


def get_config(arg=None):
  a = common.parse_arg(arg, **ARG)
  if a.optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer={a.optimizer!r}; choose from '
                     f'{", ".join(OPTIMIZERS)}')
  m3 = a.optimizer == 'm3'
  # runlocal: 16, or 3 groups of 5 (the fake set has 64 examples).
  base = a.batch or ((5 if m3 else 16) if a.runlocal else BATCH)
  c = common.cifar10_config(a, batch=3 * base if m3 else base, lr=0.1,
                            momentum=0.9 if a.optimizer == 'sgd' else 0.0,
                            probe_m=5000)
  common.weak_and_strong_optim(c, a, c.checkpoint_every)  # an epoch
  return c


def get_sweep(arg=None):
  del arg  # the same grid for either model
  return [{'arg': f'optimizer={name}', 'noise.rate': rate}
          for name in OPTIMIZERS for rate in (0.0, 0.5)]
