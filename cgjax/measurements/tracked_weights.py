"""Per-example gradient values of chosen weights (the CG code's
`log_gradients`): what each tracked example asks of each tracked weight.

At each scheduled step, for a fixed sample of `examples` training examples
(their training labels, noisy ones included) and, in each tracked parameter
leaf, a fixed random choice of `weights` coordinates, the gradient of each
example's own loss w.r.t. each coordinate (BatchNorm in eval mode, as the
probes). The CG code tracked 400 examples and 300 weights of every layer,
with gradients of the mean loss over the training set (each value 1/N of
this one). The values are part of the checkpointed state, so a resumed run
continues them exactly, and go to `{name}.npz` in the workdir: `values`
[steps, examples, coordinates] (float32), `steps`, the examples' `keys`,
`is_noisy`, and each coordinate's `leaf` (its parameter path) and `index`
(flat index in that leaf). The state grows by examples x coordinates x 4
bytes a measurement (1.9 MB for the defaults on the MNIST MLP's 4 kernels).

Metric: `{name}/sign_agreement`, the mean over tracked coordinates of
|sum of the examples' gradient signs| / examples: 1 where every example pulls
a weight the same way, near 0 where they cancel (the coherence of single
weights, the CG paper's weak and strong directions).

Fields:
  examples         training examples tracked (a fixed sample by seed)
  weights          coordinates per tracked leaf (all of a smaller leaf)
  layers           parameter paths to track; () = every leaf of rank >= 2
                   (the kernels, as the CG code's weights)
  microbatch_size  examples per gradient pass (replicated on each device)
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from cgjax import data as data_lib
from cgjax import losses
from cgjax import measurements
from cgjax import workdir as workdir_lib
from cgjax.data import pipeline

FIELDS = {'examples': 400, 'weights': 300, 'layers': (),
          'microbatch_size': 100}

# Policies (cgjax.measurements): every value must stay finite (the default).
FIGURES = ()


class Measurement:

  def __init__(self, name, cfg, ctx):
    measurements.at_least(name, cfg, examples=1, weights=1,
                          microbatch_size=1)
    shapes = jax.eval_shape(functools.partial(ctx.model.init, train=False),
                            jax.random.key(0),
                            ctx.dataset.train.images[:1])['params']
    leaves = dict(zip(ctx.param_paths, jax.tree.leaves(shapes)))
    unknown = [p for p in cfg.layers if p not in leaves]
    if unknown:
      raise ValueError(f'measurements.{name}.layers: no parameter {unknown} '
                       f'in model {ctx.config.model.name!r} (e.g. '
                       f'{", ".join(ctx.param_paths[:3])})')
    tracked = list(cfg.layers) or [p for p, s in leaves.items()
                                   if len(s.shape) >= 2]
    train = ctx.dataset.train
    self._index = np.sort(pipeline.fixed_sample(
        train, np.ones(len(train), bool), cfg.examples, ctx.config.seed))
    self._leaf, self._flat = [], []
    for path in tracked:
      size = int(np.prod(leaves[path].shape))
      rng = np.random.default_rng((ctx.config.seed,
                                   ctx.param_paths.index(path)))
      chosen = np.sort(rng.choice(size, min(cfg.weights, size),
                                  replace=False))
      self._leaf += [path] * len(chosen)
      self._flat.append(chosen)
    self._flat = np.concatenate(self._flat)
    where = {p: i for i, p in enumerate(ctx.param_paths)}
    picks = [(where[p], np.asarray([f for l, f in zip(self._leaf, self._flat)
                                    if l == p])) for p in tracked]
    per_example = losses.make_per_example_loss(ctx.model)

    @jax.jit
    def values(params, batch_stats, images, labels):
      grads = jax.vmap(jax.grad(per_example), in_axes=(None, 0, None))(
          params, {'image': images, 'label': labels}, batch_stats)
      flat = jax.tree.leaves(grads)
      return jnp.concatenate([flat[i].reshape(len(labels), -1)[:, cols]
                              for i, cols in picks], 1)

    self._values_fn = values
    self._name, self._ctx, self._cfg = name, ctx, cfg
    self._values = np.zeros((0, len(self._index), len(self._flat)),
                            np.float32)
    self._steps = np.zeros(0, np.int32)

  def describe(self) -> str:
    return (f'{self._name}: {len(self._index)} examples x '
            f'{len(self._flat)} weights of {len(set(self._leaf))} leaves')

  def run(self, state, step):
    train = self._ctx.dataset.train
    rows = []
    for start in range(0, len(self._index), self._cfg.microbatch_size):
      measurements.check_stop(self._ctx)
      index = self._index[start:start + self._cfg.microbatch_size]
      rows.append(np.asarray(self._values_fn(
          state.params, state.batch_stats, train.read_images(index),
          train.labels[index])))
    now = np.concatenate(rows)
    self._values = np.concatenate([self._values, now[None]])
    self._steps = np.append(self._steps, np.int32(step))
    agreement = np.abs(np.sign(now).sum(0)) / len(now)
    return {f'{self._name}/sign_agreement': float(agreement.mean())}

  def summary(self, metrics):
    return (f'tracked weights: sign agreement '
            f'{metrics[f"{self._name}/sign_agreement"]:.3f}')

  def state_dict(self):
    return {'values': self._values, 'steps': self._steps}

  def load_state_dict(self, arrays):
    self._values = np.asarray(arrays['values'], np.float32)
    self._steps = np.asarray(arrays['steps'], np.int32)

  def finalize(self, workdir):
    if not workdir_lib.is_writer():
      return
    train = self._ctx.dataset.train
    workdir_lib.write_file(workdir, f'{self._name}.npz', data_lib.npz_bytes(
        values=self._values, steps=self._steps, keys=train.keys[self._index],
        is_noisy=train.is_noisy[self._index], leaf=np.asarray(self._leaf),
        index=self._flat))
