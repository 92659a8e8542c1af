"""The loss every part of cgjax uses: mean cross-entropy of integer labels,
and the per-example loss of the measurements with its BatchNorm modes."""
import jax
import jax.numpy as jnp
import optax

# How a per-example loss normalizes in a BatchNorm model: 'running', with the
# running averages (eval mode, as the authors' W&S trainer evaluates), so an
# example's gradient is its own; 'batch', with the statistics of the batch
# it is measured in, held constant (no gradient through them).
BN_MODES = ('running', 'batch')


def check_bn_mode(field: str, mode: str):
  if mode not in BN_MODES:
    raise ValueError(f'{field} must be one of {BN_MODES}, got {mode!r}')


def cross_entropy(logits, labels):
  """Per-example softmax cross-entropy, computed in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)


def batch_statistics(model, params, batch_stats, images):
  """The BatchNorm statistics (mean, biased variance) of `images` in a
  train-mode pass, in the shape of `batch_stats`: a pass updates each
  running average r to momentum * r + (1 - momentum) * s, so passes from
  r = 0 and r = 1 give (1 - momentum) s and the momentum itself, whatever
  each layer's momentum. Dropout draws from a fixed key (stochastic depth
  changes later layers' statistics; dropout before the head does not)."""

  def updated(fill):
    stats = jax.tree.map(lambda x: jnp.full_like(x, fill), batch_stats)
    return model.apply({'params': params, 'batch_stats': stats}, images,
                       train=True, mutable=['batch_stats'],
                       rngs={'dropout': jax.random.key(0)})[1]['batch_stats']

  from_zero, from_one = updated(0.0), updated(1.0)
  return jax.tree.map(lambda a, b: a / (1 - (b - a)), from_zero, from_one)


def make_per_example_loss(model):
  """Training loss of one example (no weight decay), for coherence, with
  BatchNorm normalizing by the given `batch_stats` held constant: the
  running averages (eval mode), so one example's gradient does not depend
  on which other examples share its batch, or `batch_statistics` of a
  batch (BN_MODES).
  """

  def per_example_loss(params, example, batch_stats):
    logits = model.apply({'params': params, 'batch_stats': batch_stats},
                         example['image'][None], train=False)[0]
    return cross_entropy(logits, example['label'])

  return per_example_loss
