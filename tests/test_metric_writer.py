"""The config as TensorBoard's HParams tab shows it, read back by
TensorBoard's own event reader."""
from cgjax.workdir import records
from tests.conftest import tensorboard_hparams


def test_hparams_keep_numbers_and_split_tuples_per_element(tmp_path):
  writer = records.MetricWriter(str(tmp_path))
  writer.write_config({'num_steps': 4000, 'optim.lr': 0.1,
                       'optim.step_boundaries': (0.5, 0.75),
                       'model.kwargs.widths': (512, 512),
                       'measurements.probe.sets': ('clean', 'noisy'),
                       'data.augment': False, 'init_from': None,
                       'trackers': ()}, ['eval/test_acc'])
  writer.close()
  values, metrics = tensorboard_hparams(tmp_path)
  assert values == {'num_steps': 4000.0, 'optim.lr': 0.1,
                    'optim.step_boundaries[0]': 0.5,
                    'optim.step_boundaries[1]': 0.75,
                    'model.kwargs.widths[0]': 512.0,
                    'model.kwargs.widths[1]': 512.0,
                    'measurements.probe.sets[0]': 'clean',
                    'measurements.probe.sets[1]': 'noisy',
                    'data.augment': False, 'init_from': 'None',
                    'trackers': '()'}
  assert metrics == ['eval/test_acc']
