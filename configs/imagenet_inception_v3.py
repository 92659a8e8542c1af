"""Inception-V3 (no aux head) on ImageNet at 299 px; see common.imagenet_config.

  python launch.py --config configs/imagenet_inception_v3.py:noise=1.0 \
      --config.data.data_dir=DATA_DIR --workdir runs/iv3_random
"""
from configs import common


def get_config(arg=None):
  return common.imagenet_config(arg, 'inception_v3', {'dtype': 'float32'},
                                 image_size=299,
                                 runlocal_size=75)
