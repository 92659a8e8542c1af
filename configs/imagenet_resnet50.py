"""ResNet-50 on ImageNet with label noise: the m-coherence follow-up's model.

    python launch.py --config configs/imagenet_resnet50.py:noise=0.5 \
        --config.data.data_dir=DATA_DIR --workdir runs/r50_noise50

The m-coherence paper's training (configs/mcoherence_imagenet.py: batch 4096,
SGD momentum 0.9, Goyal schedule, no augmentation, no weight decay; each
unverified, see its table) with the later paper's model and probe sample of
50,000 examples per set (its ratio to the orthogonal baseline peaks near 40
with real labels, below about 5 with random ones): unverified, from
secondary notes; only the papers' abstracts could be checked. Label noise
of kind 'uniform' (a selected label becomes a uniformly random class), as
that config's (unverified). arg: noise, seed, probe, epochs,
train_examples, runlocal; the sweep is the noise grid 0, 0.25, 0.5, 0.75, 1.
"""
from cgjax.configs import common
from cgjax.configs import mcoherence_imagenet


def get_config(arg=None):
  a = common.parse_arg(arg, noise=0.0, seed=0, probe=50_000, epochs=90,
                       train_examples=0, runlocal=False)
  return mcoherence_imagenet.build(a, 'resnet50')


get_sweep = mcoherence_imagenet.get_sweep
