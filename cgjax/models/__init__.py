"""Linen models, chosen by module name: `config.model.name` = module here.

Each module defines `Model`, a linen Module called as
`Model(num_classes=K, **config.model.kwargs)(images, train=...)` on uint8 or
float images [B, H, W, C]; it returns logits [B, K].
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


def to_float(images):
  """uint8 pixels -> float32 in [0, 1]; float inputs pass through."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) / 255.0
  return images
