"""Linen models, chosen by module name: `config.model.name` = module here.

Each module defines `Model`, a linen Module called as
`Model(num_classes=K, **config.model.kwargs)(images, train=...)` on uint8 or
float images [B, H, W, C]; it returns logits [B, K]. A module may define
`layer_group(param_path) -> str`, the named groups (residual stages,
Inception blocks) that per-group metrics report; the default group is the
top-level module of each parameter.
"""
import importlib
import pkgutil


def names() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(__path__))


def check_name(name: str):
  if name not in names():
    raise ValueError(f'unknown model {name!r}; available: {", ".join(names())}')


def get_model(name: str, num_classes: int, **kwargs):
  check_name(name)
  return importlib.import_module(f'cgjax.models.{name}').Model(
      num_classes=num_classes, **kwargs)


def layer_group_fn(name: str):
  """The model module's `layer_group`, or the top-level module name."""
  from cgjax import coherence  # pylint: disable=g-import-not-at-top
  check_name(name)
  module = importlib.import_module(f'cgjax.models.{name}')
  return getattr(module, 'layer_group', coherence.top_module)


def to_float(images):
  """uint8 pixels -> float32 in [0, 1]; float inputs pass through."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) / 255.0
  return images
