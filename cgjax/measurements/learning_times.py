"""When each training example is learned (the CG reference code's when-learnt).

At each scheduled step, every example of a fixed set of training examples
(all of them, or a fixed sample of `examples`) is classified with the
current params (BatchNorm in eval mode), and four steps are kept per example:

  first_correct                  first measured step it was classified as its
                                 training label
  stays_correct                  the step from which it has been classified so
                                 at every measured step since (-1: not now)
  first_correct_clean_label,     the same against its original label
  stays_correct_clean_label

(-1 where there is no such step yet). They are part of the checkpointed
state, so a resumed run continues them exactly, and are written to
`{name}.npz` in the workdir (`learning.npz` for the default name) with the
example `keys`, `is_noisy`, `label`, `clean_label` and the measured `steps`.
Metrics: the fraction of clean and of noisy examples classified correctly at
least once so far, `{name}/clean/ever_correct`,
`{name}/noisy/ever_correct_vs_noisy_label` (memorized) and
`{name}/noisy/ever_correct_vs_clean_label`.

Fields:
  examples     0: every training example; N: a fixed sample of N of them
  batch_size   global evaluation batch (a multiple of the device count)
  learned_at   steps N (measured in addition to the schedule) at which
               every training example, not only the `examples` sample, is
               classified (streamed in batches, each process reading its own
               rows; the full pass runs at these steps only), and the keys of
               those classified as their training label are written to
               `{name}_learned_at_{N}.json` (the "easy" examples of the
               Weak-and-Strong paper's easy/hard study, selected over the
               whole training set as the authors did) and those of the others
               to `{name}_not_learned_at_{N}.json` (the "hard" ones);
               `data.include_keys` reads either
"""

import numpy as np

from cgjax import data as data_lib
from cgjax import measurements
from cgjax import parallel
from cgjax import workdir as workdir_lib
from cgjax.data import pipeline
from cgjax.measurements import evaluation

FIELDS = {'examples': 0, 'batch_size': 1000, 'learned_at': ()}
COLUMNS = ('first_correct', 'stays_correct', 'first_correct_clean_label',
           'stays_correct_clean_label')

# Policies (cgjax.measurements): every value must stay finite (the default).
FIGURES = ('fig_learning',)



def update(times: np.ndarray, correct: np.ndarray, step: int) -> np.ndarray:
  """New [n, 2] (first, stays) steps after a measurement at `step`."""
  first, stays = times[:, 0], times[:, 1]
  first = np.where(correct & (first < 0), step, first)
  stays = np.where(correct, np.where(stays < 0, step, stays), -1)
  return np.stack([first, stays], 1).astype(np.int32)


class Measurement:

  def __init__(self, name, cfg, ctx):
    measurements.at_least(name, cfg, examples=0, batch_size=1)
    bad = [s for s in cfg.learned_at
           if not 0 <= s <= ctx.config.num_steps]
    if bad:
      raise ValueError(f'measurements.{name}.learned_at steps must lie in '
                       f'[0, num_steps={ctx.config.num_steps}], got {bad}')
    parallel.check_divisible(f'measurements.{name}.batch_size',
                             cfg.batch_size, ctx.mesh)
    train = ctx.dataset.train
    self._index = np.sort(pipeline.fixed_sample(
        train, np.ones(len(train), bool), cfg.examples, ctx.config.seed))
    self._name, self._ctx, self._cfg = name, ctx, cfg
    self.extra_steps = set(cfg.learned_at)
    self._predict = evaluation.make_predict(ctx.model,
                                            ctx.dataset.num_classes, ctx.mesh)
    self._times = np.full((len(self._index), len(COLUMNS)), -1, np.int32)
    self._steps = np.zeros(0, np.int32)

  def run(self, state, step):
    train = self._ctx.dataset.train
    selecting = step in self.extra_steps
    # At a learned_at step every training example, else the sample.
    index = np.arange(len(train)) if selecting else self._index
    every = evaluation.run_predict(self._predict, state, train, index,
                                   self._cfg.batch_size, self._ctx.mesh)['pred']
    if selecting:
      learned = every == train.labels
      for kind, rows in (('learned', learned), ('not_learned', ~learned)):
        workdir_lib.write_json(
            self._ctx.workdir, f'{self._name}_{kind}_at_{step}.json',
            {'step': step, 'keys': train.keys[rows].tolist()})
    pred = every[self._index] if selecting else every
    label = train.labels[self._index]
    correct = pred == label
    correct_clean = pred == train.clean_labels[self._index]
    self._times = np.concatenate([update(self._times[:, :2], correct, step),
                                  update(self._times[:, 2:], correct_clean,
                                         step)], 1)
    self._steps = np.append(self._steps, np.int32(step))
    noisy = train.is_noisy[self._index]
    ever = lambda column, rows: (float(np.mean(self._times[rows, column] >= 0))
                                 if rows.any() else None)
    metrics = {'clean/ever_correct': ever(0, ~noisy),
               'noisy/ever_correct_vs_noisy_label': ever(0, noisy),
               'noisy/ever_correct_vs_clean_label': ever(2, noisy)}
    return {f'{self._name}/{k}': v for k, v in metrics.items()
            if v is not None}

  def summary(self, metrics):
    words = {'clean/ever_correct': 'clean',
             'noisy/ever_correct_vs_noisy_label': 'noisy (noisy label)',
             'noisy/ever_correct_vs_clean_label': 'noisy (clean label)'}
    return 'ever correct: ' + ', '.join(
        f'{words[k.split("/", 1)[1]]} {v:.3f}' for k, v in metrics.items())

  def state_dict(self):
    return {'times': self._times, 'steps': self._steps}

  def load_state_dict(self, arrays):
    self._times = np.asarray(arrays['times'], np.int32)
    self._steps = np.asarray(arrays['steps'], np.int32)

  def finalize(self, workdir):
    if not workdir_lib.is_writer():
      return
    train = self._ctx.dataset.train
    workdir_lib.write_file(workdir, f'{self._name}.npz', data_lib.npz_bytes(
        keys=train.keys[self._index], is_noisy=train.is_noisy[self._index],
        label=train.labels[self._index],
        clean_label=train.clean_labels[self._index], steps=self._steps,
        **{c: self._times[:, i] for i, c in enumerate(COLUMNS)}))
