"""Linen models, chosen by module name: `config.model.name` = a module here,
or a module path of the user's own (`my_lab.wide_mlp`, cgjax.plugins).

Each module defines `Model`, a linen Module called as
`Model(num_classes=K, **config.model.kwargs)(images, train=...)` on uint8 or
float images [B, H, W, C]; it returns logits [B, K]. A module may define
`layer_group(param_path) -> str`, the named groups (residual stages,
Inception blocks) that per-group metrics report; the default group is the
top-level module of each parameter.
"""
import pkgutil

from cgjax import plugins


def names() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(__path__))


def module(name: str):
  """The model's module: cgjax.models.NAME, or the module path NAME."""
  return plugins.load(name, 'cgjax.models', 'model', names())


def check_name(name: str):
  module(name)


# Model fields that must be positive (sizes) or a probability in [0, 1).
POSITIVE = ('widths', 'width', 'channels', 'hidden', 'depth')
RATES = ('dropout', 'stochastic_depth')


def check_kwargs(kwargs: dict):
  """Raises ValueError naming a model.kwargs field out of range."""
  for key, value in kwargs.items():
    values = value if isinstance(value, (tuple, list)) else (value,)
    if key in POSITIVE and any(not isinstance(v, int) or v <= 0
                               for v in values):
      raise ValueError(f'model.kwargs.{key} must be positive integers, got '
                       f'{value!r}')
    if key in RATES and not (isinstance(value, (int, float))
                             and 0 <= value < 1):
      raise ValueError(f'model.kwargs.{key} must lie in [0, 1), got {value!r}')


def get_model(name: str, num_classes: int, **kwargs):
  check_kwargs(kwargs)
  return module(name).Model(num_classes=num_classes, **kwargs)


def stage_group(path: str, prefixes: tuple[str, ...]) -> str:
  """A parameter's top-level module, cut at its first '_' where it starts
  with one of `prefixes` ('stage2_block1' -> 'stage2'): the named stages of a
  model as per-group metrics see them."""
  top = path.split('/')[0]
  return top.split('_')[0] if top.startswith(prefixes) else top


def layer_group_fn(name: str):
  """The model module's `layer_group`, or the top-level module name."""
  from cgjax import coherence  # pylint: disable=g-import-not-at-top
  return getattr(module(name), 'layer_group', coherence.top_module)


# torchvision's ImageNet channel statistics, of pixels in [0, 1] (RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZE = ('unit', 'imagenet')


def to_float(images, normalize: str = 'unit'):
  """uint8 pixels -> float32: in [0, 1] ('unit'), or standardized with the
  ImageNet mean/std ('imagenet', as torchvision-trained references are); float
  inputs pass through. Done in the model so batches travel as uint8."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  if normalize not in NORMALIZE:
    raise ValueError(f'model normalize={normalize!r}; choose from {NORMALIZE}')
  if not jnp.issubdtype(images.dtype, jnp.integer):
    return images
  x = images.astype(jnp.float32) / 255.0
  if normalize == 'imagenet':
    x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
  return x
