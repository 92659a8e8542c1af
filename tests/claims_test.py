"""experiments.claims on hand-made sweeps whose statistics are known."""
import json
import os

import numpy as np

from experiments import claims
from experiments import runs as runs_lib
from tests.conftest import ROOT

STEPS = [0, 1, 2, 5, 10, 50, 100, 200, 400, 1000]
M = 100  # probe size: m-coherence = 1 + (M - 1) rho
T_975_2 = 4.302652729911275  # Student t, 2 degrees of freedom (tables)


def _run(path, seed, rate, probes, shares=None, learning=None, acc=None,
         model='mlp', layers=None):
  """A finished-looking workdir: `probes` {set: rho per STEPS} written as
  rho, rho_low = rho - 0.01 and m_coherence; `acc` (eval steps, noisy-label
  accuracy); `layers` {path: rho per STEPS} of the clean probe."""
  os.makedirs(path)
  config = {'seed': seed, 'num_steps': 1000, 'noise': {'rate': rate},
            'model': {'name': model},
            'measurements': {'probe': {'type': 'coherence', 'm': M},
                             'eval': {'type': 'evaluation'},
                             'learning': {'type': 'learning_times'},
                             'shares': {'type': 'loss_shares'}}}
  json.dump(config, open(os.path.join(path, 'config.json'), 'w'))
  series = {}
  for name, values in probes.items():
    series[f'probe/{name}/rho'] = values
    series[f'probe/{name}/rho_low'] = [v - 0.01 for v in values]
    series[f'probe/{name}/m_coherence'] = [1 + (M - 1) * v for v in values]
  for layer, values in (layers or {}).items():
    series[f'probe/clean/per_layer/{layer}/rho'] = values
    series[f'probe/clean/per_layer/{layer}/m_coherence'] = [
        1 + (M - 1) * v for v in values]
  for name, values in (shares or {}).items():
    series[f'shares/{name}'] = values
  rows = [{'step': s, 'name': k, 'value': v}
          for k, values in series.items() for s, v in zip(STEPS, values)]
  if acc:
    rows += [{'step': s, 'name': 'eval/noisy_acc_vs_noisy_label', 'value': v}
             for s, v in zip(*acc)]
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows)
  if learning is not None:
    np.savez(os.path.join(path, 'learning.npz'), **learning)


def _sweep(root, seed, spike=1.0, scale=1.0):
  """Noise 0, 0.5, 1; the random-label rho times `scale`."""
  ones = [0.0] * len(STEPS)
  # Noise 0: one unstable probe (spike) must not make the peak: the
  # running median of 5 sees 0.08, 0.09, 0.10 around it.
  real = [0.05, 0.08, 0.09, spike, 0.10, 0.09, 0.08, 0.07, 0.06, 0.05]
  _run(f'{root}/a', seed, 0.0, {'clean': real, 'test': ones})
  _run(f'{root}/b', seed, 0.5,
       {'clean': [0.04, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06,
                  0.02],
        'noisy': [0.02, 0.02, 0.03, 0.03, 0.02, 0.03, 0.03, 0.03, 0.03,
                  0.09]},
       shares={'f_p': [0.7, 0.8, 0.6, 0.7, 0.7, 0.4, 0.4, 0.4, 0.4, 0.4],
               'null_f_p': [0.5] * len(STEPS)},
       learning={'is_noisy': np.array([0, 0, 0, 1, 1], bool),
                 'first_correct': np.array([1, 2, 5, 100, -1]),
                 'steps': np.array(STEPS)})
  _run(f'{root}/c', seed, 1.0,
       {'noisy': [scale * v for v in (0.01, 0.02, 0.03, 0.04, 0.03, 0.03,
                                      0.04, 0.05, 0.04, 0.03)]},
       acc=([0, 100, 200, 400, 1000], [0.1, 0.1, 0.3, 0.6, 0.95]))
  return runs_lib.find([root])


def test_claim_statistics_by_hand(tmp_path):
  rows = claims.claim_rows(_sweep(str(tmp_path), 0, spike=1.0))
  stat = {k: v.value for k, v in rows.items()}
  # Peaks of the running medians of 5: noise 0: 0.09 (the spike of 1 never
  # a median); noise 1: 0.04 (step 50: median of 0.04, 0.03, 0.03, 0.04,
  # 0.09) -> 2.25. On m-coherence (1 + 99 rho): 9.91 / 4.96.
  np.testing.assert_allclose(stat['2'], 2.25)
  np.testing.assert_allclose(rows['2'].m_coherence, 9.91 / 4.96)
  # Noise 1: accuracy interpolated at the probe steps is 0.1 up to step
  # 100, 0.3 at 200, 0.6 at 400, 0.95 at 1000: memorizing at 200 and 400
  # (rho 0.05, 0.04: median 0.045; lower bounds 0.04, 0.03: 0.035 > 0);
  # before: steps 1-100 (0.02, 0.03, 0.04, 0.03, 0.03, 0.04: median 0.03).
  np.testing.assert_allclose(stat['3a'], 0.045)
  assert rows['3a'].condition
  np.testing.assert_allclose(stat['3b'], 0.045 - 2 * 0.03)
  np.testing.assert_allclose(rows['3b'].m_coherence,
                             (1 + 99 * 0.045) - 2 * (1 + 99 * 0.03))
  # noise 0.5, steps 1-400: clean/noisy = 3, 2, 2, 3, 2, 2, 2, 2 -> 2
  np.testing.assert_allclose(stat['4a'], 2.0)
  # first-correct medians: clean 2, noisy median(100, never) = inf -> 0
  assert stat['4b'] == 0.0
  # f_p - null over steps 0-40: 0.2, 0.3, 0.1, 0.2, 0.2 -> 0.2
  np.testing.assert_allclose(stat['6'], 0.2)


def test_a_claim_holds_only_where_its_interval_over_seeds_clears(tmp_path):
  sweeps = [_sweep(str(tmp_path / f's{i}'), i, scale=scale)
            for i, scale in enumerate((1.0, 0.98, 1.02))]
  text = claims.table(sweeps)
  row = next(line for line in text.splitlines() if line.startswith('| 2:'))
  values = np.array([2.25 / 1.0, 2.25 / 0.98, 2.25 / 1.02])
  half = T_975_2 * values.std(ddof=1) / np.sqrt(3)
  assert (f'[{values.mean() - half:#.3g}, {values.mean() + half:#.3g}] | yes |'
          in row), row
  assert values.mean() - half > 2  # so 'yes' is the right verdict
  # 3b: 0.045 - 2 x 0.03 = -0.015 times the seed's scale: below 0.
  row = next(line for line in text.splitlines() if line.startswith('| 3b:'))
  assert '| -0.015 | -0.0147 | -0.0153 |' in row, row
  assert 'not shown (interval reaches the threshold)' in row, row
  # A seed whose random labels are as coherent as the real ones.
  sweeps.append(_sweep(str(tmp_path / 's3'), 3, scale=2.25))
  row = next(line for line in claims.table(sweeps).splitlines()
             if line.startswith('| 2:'))
  assert 'not shown (interval reaches the threshold)' in row, row
  one = claims.table(sweeps[:1])  # one seed: no interval
  row = next(line for line in one.splitlines() if line.startswith('| 2:'))
  assert 'not shown (one seed: no interval)' in row, row


def test_claim_3a_needs_every_seeds_lower_bound_above_zero(tmp_path):
  sweeps = [_sweep(str(tmp_path / f's{i}'), i) for i in range(3)]
  # Seed 2's interval at the memorizing probes reaches below 0.
  for run in sweeps[2]:
    if run.noise == 1.0:
      steps, values = run.series['probe/noisy/rho']
      run.series['probe/noisy/rho_low'] = (steps, [v - 0.2 for v in values])
  row = next(line for line in claims.table(sweeps).splitlines()
             if line.startswith('| 3a:'))
  assert 'not shown (lower bound <= 0 on 1 seed(s))' in row, row


def test_run_uses_the_launcher_beside_the_package():
  """--run starts launch.py by its absolute path (works from any folder)."""
  assert os.path.isabs(claims.LAUNCH)
  assert os.path.samefile(claims.LAUNCH, os.path.join(ROOT, 'launch.py'))


def test_the_conv_studys_layer_and_transient_claims_by_hand(tmp_path):
  """Claim L: per probe, conv0 / max(dense, head) rho; median over steps
  >= 1. Claim T: rho at step 0 / its median over steps 10-40."""
  root = str(tmp_path)
  clean = [2.0, 0.3, 0.12, 0.09, 0.06, 0.05, 0.04, 0.04, 0.03, 0.03]
  layers = {'conv0/kernel': [50, 9, 8, 6, 5, 4, 4, 3, 3, 2],
            'dense/kernel': [40, 3, 4, 3, 6, 2, 2, 2, 1, 1],
            'head/kernel': [90, 4, 2, 5, 2, 2, 1, 1, 1, 4]}
  _run(f'{root}/a', 0, 0.0, {'clean': clean}, model='cnn',
       layers={k: [v / 100 for v in values] for k, values in layers.items()})
  sweep = runs_lib.find([root])
  assert claims.study_of(sweep) is claims.STUDIES['conv']
  rows = claims.claim_rows(sweep)
  # steps 1 ... 1000: conv0 / max(dense, head) = 9/4, 8/4, 6/5, 5/6, 4/2,
  # 4/2, 3/2, 3/1, 2/4 -> sorted 0.5, 0.83, 1.2, 1.5, 2, 2, 2, 2.25, 3:
  # median 2
  np.testing.assert_allclose(rows['L'].value, 2.0)
  # step 0: 2.0; steps 10-40: only step 10 (0.06) -> 2 / 0.06
  np.testing.assert_allclose(rows['T'].value, 2.0 / 0.06)
  np.testing.assert_allclose(rows['T'].m_coherence, (1 + 99 * 2.0)
                             / (1 + 99 * 0.06))
  # The MLP study has neither claim.
  assert not {'L', 'T'} & set(claims.claim_rows(sweep, claims.STUDIES['mlp']))


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
  assert c.noise.kind == 'permute'
  probe = c.measurements.probe
  assert probe.statistics == 'norms' and probe.all_every == 10
  steps = sorted(measurements.schedule_steps(probe, c.num_steps))
  assert {0, 1, 2, 3, 40, 2000} <= set(steps)
