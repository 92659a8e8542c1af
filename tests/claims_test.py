"""experiments.claims on hand-made sweeps whose statistics are known."""
import json
import os

import numpy as np

from experiments import claims
from experiments import runs as runs_lib
from tests.conftest import ROOT

STEPS = [0, 1, 2, 5, 10, 50, 100, 200, 400, 1000]


def _run(path, seed, rate, probes, shares=None, learning=None):
  os.makedirs(path)
  config = {'seed': seed, 'num_steps': 1000, 'noise': {'rate': rate},
            'measurements': {'probe': {'type': 'coherence', 'm': 100},
                             'learning': {'type': 'learning_times'},
                             'shares': {'type': 'loss_shares'}}}
  json.dump(config, open(os.path.join(path, 'config.json'), 'w'))
  rows = [{'step': s, 'name': f'probe/{name}/m_coherence', 'value': v}
          for name, values in probes.items() for s, v in zip(STEPS, values)]
  for name, values in (shares or {}).items():
    rows += [{'step': s, 'name': f'shares/{name}', 'value': v}
             for s, v in zip(STEPS, values)]
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows)
  if learning is not None:
    np.savez(os.path.join(path, 'learning.npz'), **learning)


def _sweep(root, seed, spike):
  ones = [1.0] * len(STEPS)
  # Noise 0: one unstable probe (spike) must not make the peak: the
  # running median of 5 sees 8, 9, 10 around it.
  real = [5, 8, 9, spike, 10, 9, 8, 7, 6, 5]
  _run(f'{root}/a', seed, 0.0, {'clean': real, 'test': ones})
  _run(f'{root}/b', seed, 0.5,
       {'clean': [4, 6, 6, 6, 6, 6, 6, 6, 6, 2],
        'noisy': [2, 2, 3, 3, 2, 3, 3, 3, 3, 9]},
       shares={'f_p': [0.7, 0.8, 0.6, 0.7, 0.7, 0.4, 0.4, 0.4, 0.4, 0.4],
               'null_f_p': [0.5] * len(STEPS)},
       learning={'is_noisy': np.array([0, 0, 0, 1, 1], bool),
                 'first_correct': np.array([1, 2, 5, 100, -1]),
                 'steps': np.array(STEPS)})
  _run(f'{root}/c', seed, 1.0, {'noisy': [1, 2, 3, 4, 3, 3, 4, 4, 3, 3]})
  return runs_lib.find([root])


def test_claim_statistics_by_hand(tmp_path):
  rows = claims.claim_rows(_sweep(str(tmp_path), 0, spike=100))
  stat = {k.split(':')[0]: v[1] for k, v in rows.items()}
  holds = {k.split(':')[0]: v[2] for k, v in rows.items()}
  # Peaks of the running medians of 5: noise 0: 9 (the spike of 100 never a
  # median); noise 1: 4 (at step 50: median of 4, 3, 3, 4, 4) -> 9 / 4.
  assert stat['2'] == 2.25 and holds['2']
  # noise 1, steps >= 100: 4, 4, 3, 3 -> 3.5
  assert stat['3'] == 3.5 and holds['3']
  # noise 0.5, steps 1-400: clean/noisy = 3, 2, 2, 3, 2, 2, 2, 2 -> 2
  assert stat['4a'] == 2.0 and holds['4a']
  # first-correct medians: clean 2, noisy median(100, never) = inf -> 0
  assert stat['4b'] == 0.0 and holds['4b']
  # f_p - null over steps 0-40: 0.2, 0.3, 0.1, 0.2, 0.2 -> 0.2
  np.testing.assert_allclose(stat['6'], 0.2)


def test_table_over_seeds_says_where_a_claim_fails(tmp_path):
  good = _sweep(str(tmp_path / 's0'), 0, spike=100)
  bad = _sweep(str(tmp_path / 's1'), 1, spike=100)
  # seed 1's random-label run is as coherent as the real-label one
  for run in bad:
    if run.noise == 1.0:
      run.series['probe/noisy/m_coherence'] = (STEPS, [9.0] * len(STEPS))
  text = claims.table([good, bad])
  row = next(line for line in text.splitlines() if line.startswith('| 2:'))
  assert '| 2.25 | 1 | 1.62 | 0.62 | NO |' in row, row
  assert 'yes, all 2 seeds' in text
  one = claims.table([good])  # one seed: no spread, and not yet a claim
  row = next(line for line in one.splitlines() if line.startswith('| 2:'))
  assert row.endswith('| 2.25 | 2.25 | - | yes (one seed: not yet a claim '
                      'over seeds) |'), row


def test_run_uses_the_launcher_beside_the_package():
  """--run starts launch.py by its absolute path (works from any folder)."""
  assert os.path.isabs(claims.LAUNCH)
  assert os.path.samefile(claims.LAUNCH, os.path.join(ROOT, 'launch.py'))


def test_the_conv_studys_layer_and_transient_claims_by_hand(tmp_path):
  """Claim L: per probe, conv0 / max(dense, head); median over steps >= 1.
  Claim T: m-coherence at step 0 / its median over steps 10-40."""
  root = str(tmp_path)
  clean = [200, 30, 12, 9, 6, 5, 4, 4, 3, 3]  # steps 0 ... 1000
  _run(f'{root}/a', 0, 0.0, {'clean': clean})
  layers = {'conv0/kernel': [50, 9, 8, 6, 5, 4, 4, 3, 3, 2],
            'dense/kernel': [40, 3, 4, 3, 6, 2, 2, 2, 1, 1],
            'head/kernel': [90, 4, 2, 5, 2, 2, 1, 1, 1, 4]}
  path = f'{root}/a'
  config = json.load(open(os.path.join(path, 'config.json')))
  config['model'] = {'name': 'cnn'}
  json.dump(config, open(os.path.join(path, 'config.json'), 'w'))
  with open(os.path.join(path, 'metrics.jsonl'), 'a') as f:
    for layer, values in layers.items():
      f.writelines(json.dumps({'step': s, 'value': v, 'name':
                               f'probe/clean/per_layer/{layer}/m_coherence'})
                   + '\n' for s, v in zip(STEPS, values))
  sweep = runs_lib.find([root])
  assert claims.study_of(sweep) is claims.STUDIES['conv']
  rows = claims.claim_rows(sweep)
  stat = {k.split(':')[0]: v[1] for k, v in rows.items()}
  holds = {k.split(':')[0]: v[2] for k, v in rows.items()}
  # steps 1 ... 1000: conv0 / max(dense, head) = 9/4, 8/4, 6/5, 5/6, 4/2,
  # 4/2, 3/2, 3/1, 2/4 -> sorted 0.5, 0.83, 1.2, 1.5, 2, 2, 2, 2.25, 3:
  # median 2
  assert stat['L'] == 2.0 and holds['L']
  # step 0: 200; steps 10-40: only step 10 (6) -> 200 / 6
  np.testing.assert_allclose(stat['T'], 200 / 6)
  assert holds['T']
  # The MLP study has neither claim.
  assert 'L' not in {k.split(':')[0] for k in claims.claim_rows(
      sweep, claims.STUDIES['mlp'])}


def test_the_conv_study_config_and_its_sweep():
  """Noise 0, 0.5, 1 per seed; 50 epochs of SGD with momentum; m-coherence
  per layer at every probe (norms), the full statistics at every 10th."""
  from cgjax import measurements, train  # pylint: disable=g-import-not-at-top
  from configs import mnist_cnn  # pylint: disable=g-import-not-at-top
  assert mnist_cnn.get_sweep() == [{'noise.rate': r} for r in (0, 0.5, 1)]
  assert len(mnist_cnn.get_sweep('seeds=3')) == 9
  for arg in ('noise=1', 'runlocal'):
    c = mnist_cnn.get_config(arg)
    train.validate(c)
  c = mnist_cnn.get_config('noise=1')
  assert c.num_steps == 50 * 40 and c.optim.momentum == 0.9
  probe = c.measurements.probe
  assert probe.statistics == 'norms' and probe.all_every == 10
  steps = sorted(measurements.schedule_steps(probe, c.num_steps))
  assert {0, 1, 2, 3, 40, 2000} <= set(steps)
