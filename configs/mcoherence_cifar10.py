"""m-coherence under label noise on CIFAR-10: the m-coherence paper's
study (configs/mcoherence_imagenet.py) at a size one GPU trains in hours.

    python launch.py --config configs/mcoherence_cifar10.py:noise=1 \
        --config.data.data_dir=DATA_DIR --workdir runs/mc_c10_random
    python launch.py --config configs/mcoherence_cifar10.py --sweep \
        --workdir runs/mc_c10          # noise 0, 0.25, 0.5, 0.75, 1

arg (comma-separated): model ('resnet18', 'vgg13_bn'), noise (default 0),
seed, probe (examples per probe set, default 5000), epochs, train_examples
(0: CIFAR-10's 50,000), runlocal (2 epochs of the fake CIFAR-10 at batch 16
on prepared data). Prepare the data once: `tfds build cifar10`.

Neither paper's CIFAR-10 settings could be checked (abstracts only; no
m-coherence code was released): every value is cgjax's choice, following
the ImageNet study's where one carries over.

  setting            | paper | authors' code | cgjax value                         | source
  model              | -     | -             | ResNet-18 (3x3 stem), VGG-13-BN      | choice
  label noise        | -     | -             | 0, 0.25, 0.5, 0.75, 1, uniform class | ImageNet study's grid
  optimizer, batch   | -     | -             | SGD momentum 0.9, batch 128, lr 0.1  | choice
  epochs, schedule   | -     | -             | 100 (random labels memorized), /10 at | choice
                     |       |               | 50% and 75%, per epoch              |
  weight decay, aug. | -     | -             | none, none (memorization visible)   | as the ImageNet study
  probes             | -     | -             | 5,000 per set: clean, noisy, mixed,  | choice (ImageNet: 40K)
                     |       |               | test; norms, full statistics every  |
                     |       |               | 10th probe; BatchNorm running stats |
  cadence            | -     | -             | every epoch + 20 log-spaced steps    | as the ImageNet study
"""
from cgjax.configs import common

ARG = dict(model='resnet18', noise=0.0, seed=0, probe=5000, epochs=100,
           train_examples=0, runlocal=False)


def get_config(arg=None):
  a = common.parse_arg(arg, **ARG)
  c = common.cifar10_config(a, batch=16 if a.runlocal else 128, lr=0.1,
                            momentum=0.9, probe_m=a.probe)
  c.optim.update(schedule='step', step_boundaries=(0.5, 0.75),
                 step_factor=0.1, schedule_every=c.checkpoint_every)
  return c


def get_sweep(arg=None):
  del arg
  return [{'noise.rate': rate} for rate in (0.0, 0.25, 0.5, 0.75, 1.0)]
