"""ResNet-50 (v1.5) on ImageNet with label noise; see common.imagenet_config.

  python launch.py --config configs/imagenet_resnet50.py:noise=0.5 \
      --config.data.data_dir=DATA_DIR --workdir runs/r50_noise50
"""
from configs import common


def get_config(arg=None):
  return common.imagenet_config(
      arg, 'resnet', {'depth': 50, 'width': 64, 'zero_init_residual': False,
                      'small_inputs': False, 'dtype': 'float32'},
      image_size=224,
                                 runlocal_size=64)
