"""The loss every part of cgjax uses: mean cross-entropy of integer labels."""
import jax.numpy as jnp
import optax


def cross_entropy(logits, labels):
  """Per-example softmax cross-entropy, computed in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)


def make_per_example_loss(model):
  """Training loss of one example (no weight decay), for coherence.

  BatchNorm uses the running statistics (eval mode), so one example's
  gradient does not depend on which other examples share its batch.
  """

  def per_example_loss(params, example, batch_stats):
    logits = model.apply({'params': params, 'batch_stats': batch_stats},
                         example['image'][None], train=False)[0]
    return cross_entropy(logits, example['label'])

  return per_example_loss
