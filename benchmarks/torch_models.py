"""PyTorch twins of cgjax's models (same layers and parameter counts), for
benchmarks that time the same network in both frameworks. Import only where
torch is installed (the CPU build is enough; torchvision is not needed)."""
import torch
from torch import nn


def mlp(num_classes: int, in_features: int = 784, widths=(256, 256, 256)):
  layers, width = [nn.Flatten()], in_features
  for w in widths:
    layers += [nn.Linear(width, w), nn.ReLU()]
    width = w
  return nn.Sequential(*layers, nn.Linear(width, num_classes))


def cnn(num_classes: int, in_channels: int = 1, image_size: int = 28,
        channels=(32, 64), hidden: int = 128):
  layers, c_in, size = [], in_channels, image_size
  for c in channels:
    layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    c_in, size = c, size // 2
  return nn.Sequential(*layers, nn.Flatten(),
                       nn.Linear(c_in * size * size, hidden), nn.ReLU(),
                       nn.Linear(hidden, num_classes))


def _conv_bn(cin, cout, k, stride=1):
  return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
          nn.BatchNorm2d(cout)]


class _Block(nn.Module):
  """ResNet v1.5 block (the stride is on the 3x3 conv), as cgjax's."""

  def __init__(self, cin, width, stride, bottleneck):
    super().__init__()
    out = 4 * width if bottleneck else width
    if bottleneck:
      body = [*_conv_bn(cin, width, 1), nn.ReLU(),
              *_conv_bn(width, width, 3, stride), nn.ReLU(),
              *_conv_bn(width, out, 1)]
    else:
      body = [*_conv_bn(cin, width, 3, stride), nn.ReLU(),
              *_conv_bn(width, width, 3)]
    self.body = nn.Sequential(*body)
    self.skip = (nn.Sequential(*_conv_bn(cin, out, 1, stride))
                 if stride != 1 or cin != out else nn.Identity())
    self.out = out

  def forward(self, x):
    return torch.relu(self.body(x) + self.skip(x))


def resnet(depth: int, num_classes: int, small_inputs: bool = False,
           width: int = 64):
  """cgjax.models.resnet in torch (depth 18/34: basic, 50+: bottleneck)."""
  blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3),
            101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
  bottleneck = depth >= 50
  if small_inputs:
    layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
              nn.ReLU()]
  else:
    layers = [*_conv_bn(3, width, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
  cin = width
  for i, n in enumerate(blocks):
    for j in range(n):
      block = _Block(cin, width * 2 ** i, 2 if i and not j else 1, bottleneck)
      layers.append(block)
      cin = block.out
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
  return nn.Sequential(*layers)
