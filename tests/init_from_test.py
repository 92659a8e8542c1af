"""init_from: a run that starts from another run's checkpoint."""
import jax
import numpy as np
import pytest

from cgjax import optim
from cgjax import runs
from cgjax import train
from cgjax import workdir as workdir_lib
from configs import mnist_mlp
from tests.conftest import metric_rows
from tests.conftest import run_python

MOMENTUM = '--config.optim.momentum=0.9'


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  """A 20-step run with momentum, checkpoints at steps 10 and 20."""
  workdir = str(tmp_path_factory.mktemp('source') / 'run')
  run_python(['launch.py', '--config', 'configs/mnist_mlp.py:runlocal',
              '--workdir', workdir, MOMENTUM])
  return workdir


def _config(init_from, init_optimizer=False, **model):
  c = mnist_mlp.get_config('runlocal')
  c.optim.momentum = 0.9
  c.update(init_from=init_from, init_optimizer=init_optimizer)
  c.model.kwargs.update(model)
  return c


def _state(config, tmp_path):
  ctx = train.make_context(config, str(tmp_path / 'new'))
  return train.initial_state(ctx, optim.make_optimizer(config.optim,
                                                       config.num_steps))


def _equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a),
                                                   jax.tree.leaves(b)))


def test_params_and_optionally_the_optimizer_come_from_the_checkpoint(
    source, tmp_path):
  saved = runs.load(source).restore(10)
  fresh = _state(_config(''), tmp_path)
  state = _state(_config(f'{source}@10'), tmp_path)
  assert int(state.step) == 0
  assert _equal(state.params, saved['params'])
  assert not _equal(state.params, fresh.params)
  # The momentum trace: this run's own (zeros) unless init_optimizer.
  assert _equal(state.opt_state, fresh.opt_state)
  with_optimizer = _state(_config(f'{source}@10', True), tmp_path)
  assert int(with_optimizer.step) == 0
  trace = [x for x in jax.tree.leaves(with_optimizer.opt_state) if x.ndim]
  assert trace and any(np.abs(x).max() > 0 for x in trace)
  assert _equal(with_optimizer.opt_state, saved['opt_state'])


def test_the_fingerprint_records_the_source_and_its_step(source):
  prints = {workdir_lib.fingerprint(_config(v))
            for v in ('', f'{source}@10', f'{source}@20')}
  assert len(prints) == 3


@pytest.mark.parametrize('value, model, message', [
    ('{source}', {}, "init_from must be WORKDIR@STEP (a checkpoint step), got "
                     "'{source}'"),
    ('{source}@7', {}, "init_from='{source}@7': {source}/checkpoints has no "
                       'checkpoint at step 7; saved steps: [10, 20]'),
    ('{source}@10', {'widths': (64,) * 3},
     "init_from='{source}@10': its params do not fit model 'mlp' with these "
     'settings (dense0/bias: (256,) in the checkpoint, (64,) here)'),
])
def test_a_bad_source_is_named(source, tmp_path, value, model, message):
  config = _config(value.format(source=source), **model)
  with pytest.raises(ValueError) as err:
    train.validate(config)
    _state(config, tmp_path)
  assert str(err.value) == message.format(source=source)


def test_a_launched_run_starts_where_the_source_was(source, tmp_path):
  """Its evaluation at step 0 is the source's at step 10."""
  workdir = str(tmp_path / 'run')
  run_python(['launch.py', '--config', 'configs/mnist_mlp.py:runlocal',
              '--workdir', workdir, MOMENTUM,
              f'--config.init_from={source}@10'])
  at = lambda rows, step: {r['name']: r['value'] for r in rows
                           if r['step'] == step
                           and r['name'].startswith('eval/')}
  theirs, ours = at(metric_rows(source), 10), at(metric_rows(workdir), 0)
  assert theirs and theirs == ours
