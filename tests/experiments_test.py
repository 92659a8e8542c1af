"""The experiment scripts' tables on hand-made runs with known answers."""
import json
import os

import numpy as np

from cgjax import runs as runs_api
from experiments import learning_dynamics
from experiments import report
from experiments import runs as runs_lib
from experiments import winsorize_study


def _run(path, seed, f_p, rate=0.5):
  os.makedirs(path)
  config = {'seed': seed, 'num_steps': 100, 'noise': {'rate': rate},
            'measurements': {'learning': {'type': 'learning_times'},
                             'shares': {'type': 'loss_shares'}}}
  json.dump(config, open(os.path.join(path, 'config.json'), 'w'))
  rows = []
  for step, p in zip((0, 20, 40, 60, 100), f_p or ()):
    rows += [{'step': step, 'name': 'shares/f_p', 'value': p},
             {'step': step, 'name': 'shares/null_f_p', 'value': 0.5}]
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows)
  np.savez(os.path.join(path, 'learning.npz'),
           is_noisy=np.array([0, 0, 1, 1, 1], bool), steps=np.array([0, 100]),
           first_correct=np.array([0, 10, 50, -1, 70]),
           stays_correct=np.array([0, 20, -1, -1, 80]))


def test_medians_per_seed_and_over_seeds(tmp_path):
  _run(str(tmp_path / 'a'), 0, (0.7, 0.6, 0.3, 0.2, 0.1))
  _run(str(tmp_path / 'b'), 1, (0.9, 0.8, 0.7, 0.2, 0.3))
  runs = runs_lib.find([str(tmp_path)])
  one = learning_dynamics.statistics(runs[0], early=40)
  assert one['median first_correct step, clean'] == 5
  assert one['median first_correct step, noisy'] == 70  # 50, never, 70
  assert one['median stays_correct step, noisy'] == np.inf
  assert one['f_p, early (steps 0-40)'] == 0.6
  np.testing.assert_allclose(one['f_p - null f_p, early (steps 0-40)'], 0.1)
  np.testing.assert_allclose(one['f_p, late (steps 50-100)'], 0.15)
  text = learning_dynamics.table(runs, early=40)
  # Seeds of one setting in one table: early f_p 0.6 and 0.8, mean 0.7.
  assert '| f_p, early (steps 0-40) | 0.6 | 0.8 | 0.7 | 0.1 |' in text, text


def test_a_sweep_with_noise_0_and_repeated_seeds(tmp_path):
  """Noise 0 writes no loss shares (no corrupt examples): its table leaves
  them out and says so. Two runs of one seed are repeats: named by their
  workdirs, with no spread (a spread needs two seeds)."""
  _run(str(tmp_path / 'clean'), 0, None, rate=0.0)
  _run(str(tmp_path / 'a'), 0, (0.7, 0.6, 0.3, 0.2, 0.1))
  _run(str(tmp_path / 'b'), 0, (0.9, 0.8, 0.7, 0.2, 0.3))
  text = learning_dynamics.table(runs_lib.find([str(tmp_path)]), early=40)
  clean = text.split('### noise 0.5')[0]
  assert 'Not measured in this setting: f_p, early (steps 0-40)' in clean
  assert '| median first_correct step, clean | 5 | 5 | - |' in clean, clean
  noisy = text.split('### noise 0.5')[1]
  assert '| statistic | seed 0 (a) | seed 0 (b) | mean |' in noisy, noisy
  assert '| f_p, early (steps 0-40) | 0.6 | 0.8 | 0.7 | - |' in noisy, noisy


def test_runs_are_labeled_by_sweep_overrides_seeds_aside():
  def run(seed, rate, aggregator, c):
    config = {'seed': seed, 'noise': {'rate': rate},
              'optim': {'aggregator': aggregator, 'winsorize_c': c}}
    return runs_api.Run.in_memory(config, {})
  runs = [run(0, 0.5, 'mean', 1), run(1, 0.5, 'mean', 1),
          run(0, 0.5, 'winsorize', 4)]
  overrides = [{'optim.aggregator': 'mean', 'seed': 0},
               {'optim.aggregator': 'mean', 'seed': 1},
               {'optim.aggregator': 'winsorize', 'optim.winsorize_c': 4}]
  assert runs_lib.labels(runs, overrides) == [
      'aggregator=mean', 'aggregator=mean',
      'aggregator=winsorize, winsorize_c=4']
  # Without a sweep.json: the fields that differ (winsorize_c's default of 1
  # shows because it differs too).
  assert runs_lib.labels(runs) == [
      'aggregator=mean, winsorize_c=1', 'aggregator=mean, winsorize_c=1',
      'aggregator=winsorize, winsorize_c=4']
  assert runs_lib.labels([run(0, 0.0, 'mean', 1), run(0, 1.0, 'mean', 1)]) == [
      'noise 0', 'noise 1']


def test_winsorize_study_table_over_seeds(tmp_path):
  def trial(path, seed, aggregator, noisy_acc):
    os.makedirs(path)
    config = {'seed': seed, 'noise': {'rate': 0.5}, 'batch_size': 100,
              'optim': {'aggregator': aggregator, 'winsorize_c': 4},
              'measurements': {'eval': {'type': 'evaluation'}}}
    json.dump(config, open(os.path.join(path, 'config.json'), 'w'))
    rows = [{'step': 10, 'name': k, 'value': v} for k, v in (
        ('eval/clean_acc', 0.9), ('eval/noisy_acc_vs_noisy_label', noisy_acc),
        ('eval/noisy_acc_vs_clean_label', 0.5), ('eval/test_acc', 0.8))]
    with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in rows)
  for seed, (sgd, wins) in enumerate(((0.30, 0.10), (0.20, 0.06))):
    trial(str(tmp_path / f's{seed}' / 'mean'), seed, 'mean', sgd)
    trial(str(tmp_path / f's{seed}' / 'w4'), seed, 'winsorize', wins)
  runs = runs_lib.find([str(tmp_path / 's0'), str(tmp_path / 's1')])
  text = winsorize_study.table(runs)
  # means 0.25 and 0.08, half-ranges 0.05 and 0.02
  assert '| SGD (mean, c=0) | 0.5 | 0.900 +- 0.000 | 0.250 +- 0.050 |' in text
  assert '| winsorize c=4 | 0.5 | 0.900 +- 0.000 | 0.080 +- 0.020 |' in text
  assert 'over 2 seeds' in text
  # The report of runs that measure accuracy only: the figures that the
  # evaluation declares, none of the probe's.
  page = open(report.build([str(tmp_path / 's0')], str(tmp_path / 'r'))).read()
  assert '<h2>Accuracy on clean, noisy and test examples</h2>' in page
  assert '<h2>Adjusted overfit per setting</h2>' in page
  assert 'm-coherence' not in page.split('<h2>', 1)[1]
  assert sorted(f for f in os.listdir(tmp_path / 'r') if f.endswith(
      '.png')) == ['accuracy.png', 'overfit.png']


def _plot(monkeypatch, module: str, path) -> dict:
  """{figure name: the Figure} that experiments.MODULE draws for the runs
  under path (not saved)."""
  import importlib  # pylint: disable=g-import-not-at-top
  drawn = {}
  monkeypatch.setattr(runs_lib, 'save',
                      lambda fig, out, name: drawn.setdefault(name, fig))
  importlib.import_module(f'experiments.{module}').plot(
      runs_lib.find([str(path)]), str(path))
  return drawn


def _probe_run(path, seed, rate, clean, overrides=None):
  """A run with clean-probe m-coherence `clean` at steps 0, 10, 100 and a
  test accuracy, as train.py writes them."""
  os.makedirs(path)
  config = {'seed': seed, 'noise': {'rate': rate},
            'measurements': {'probe': {'type': 'coherence', 'm': 50},
                             'eval': {'type': 'evaluation'}}}
  json.dump(config, open(os.path.join(path, 'config.json'), 'w'))
  rows = [{'step': s, 'name': name, 'value': v}
          for s, c in zip((0, 10, 100), clean)
          for name, v in (('probe/clean/m_coherence', c),
                          ('probe/test/m_coherence', c / 2),
                          ('eval/test_acc', 1 - rate))]
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows)


def test_coherence_figure_draws_seed_means_and_one_color_per_setting(
    tmp_path, monkeypatch):
  values = {(0.0, 0): (4, 8, 2), (0.0, 1): (6, 10, 4),
            (1.0, 0): (3, 3, 3), (1.0, 1): (5, 1, 2)}
  for (rate, seed), clean in values.items():
    _probe_run(str(tmp_path / f'r{rate}_s{seed}'), seed, rate, clean)
  drawn = _plot(monkeypatch, 'fig_coherence', str(tmp_path))
  axes = [ax for ax in drawn['coherence'].axes if ax.get_visible()]
  assert len(axes) == 3  # two settings and the overlay of both
  for ax, rate in zip(axes, (0.0, 1.0)):
    why = ('no noisy examples at noise 0' if rate == 0 else
           'fewer noisy examples than m = 50')
    assert ax.get_title().replace('\n', ' ') == (
        f'noise {rate:g} (mean of 2 seeds) (no noisy probe: {why})')
    line = next(l for l in ax.get_lines() if l.get_label() == 'clean')
    seeds = np.array([values[(rate, 0)], values[(rate, 1)]], float)
    np.testing.assert_allclose(line.get_ydata(), seeds.mean(0))
    np.testing.assert_allclose(line.get_xdata(), [0, 10, 100])
    # Three points: drawn as points (no line across the log axis), the
    # seeds' range as a whisker at each.
    assert line.get_linestyle() == 'None' and line.get_marker() == 'o'
    whiskers = np.array(ax.collections[0].get_segments())
    np.testing.assert_allclose(whiskers[:, 0, 1], seeds.min(0))
    np.testing.assert_allclose(whiskers[:, 1, 1], seeds.max(0))
  overlay = {l.get_label(): l for l in axes[2].get_lines()}
  assert set(overlay) == {'noise 0', 'noise 1'}
  assert overlay['noise 0'].get_color() != overlay['noise 1'].get_color()
  np.testing.assert_allclose(overlay['noise 1'].get_ydata(),
                             np.mean([(3, 3, 3), (5, 1, 2)], 0) / 2)


def test_report_on_runs_without_probes_and_a_non_noise_sweep(tmp_path):
  for name, c in (('mean', 1), ('winsorize', 4)):
    path = tmp_path / f'optim.aggregator={name}'
    os.makedirs(path)
    json.dump({'seed': 0, 'noise': {'rate': 0.5},
               'optim': {'aggregator': name, 'winsorize_c': c},
               'measurements': {'eval': {'type': 'evaluation'}}},
              open(path / 'config.json', 'w'))
    with open(path / 'metrics.jsonl', 'w') as f:
      for step in (0, 10):
        f.write(json.dumps({'step': step, 'name': 'eval/test_acc',
                            'value': 0.5}) + '\n')
  page = open(report.build([str(tmp_path)], str(tmp_path / 'out'))).read()
  assert 'Claims' not in page  # the settings differ in more than noise
  assert 'peak m-coh' not in page  # no run has probes: no empty columns
  # The evaluation's figures only (accuracy and overfit), none of a probe.
  assert page.count('<img') == 2 and '<h2>' + 'm-coherence' not in page


def test_a_note_panel_keeps_the_shared_axis_ticks_of_its_neighbours(
    tmp_path, monkeypatch):
  _run(str(tmp_path / 'b'), 0, (0.9, 0.8, 0.7, 0.2, 0.3))  # noise 0.5
  os.makedirs(tmp_path / 'a')  # noise 0: no shares to draw, a note
  json.dump({'seed': 0, 'noise': {'rate': 0.0}, 'measurements': {
      'shares': {'type': 'loss_shares'}}}, open(tmp_path / 'a' / 'config.json',
                                                'w'))
  with open(tmp_path / 'a' / 'metrics.jsonl', 'w') as f:
    f.write(json.dumps({'step': 0, 'name': 'train/loss', 'value': 1}) + '\n')
  drawn = _plot(monkeypatch, 'fig_shares', str(tmp_path))
  fig = drawn['shares']
  fig.canvas.draw()
  note, shares = fig.axes[:2]
  # The known cause, not a guess between two.
  assert note.texts[0].get_text().replace('\n', ' ') == (
      'noise 0: every example is pristine (f_p = 1), nothing to split')
  labels = [t.get_text() for t in shares.get_yticklabels() if t.get_visible()]
  assert any(labels), 'the f_p panel lost its y tick labels'


def test_shares_are_smoothed_and_the_memorized_part_shaded(tmp_path,
                                                           monkeypatch):
  """f_p is the running median of 5 probes (0.9, 0.8, 0.7, 0.2, 0.3 -> by
  hand: 0.8, 0.75, 0.7, 0.5, 0.3); the span from the first step where the
  noisy labels are 90% fitted (step 60) is shaded to the axis' end."""
  _run(str(tmp_path / 'b'), 0, (0.9, 0.8, 0.7, 0.2, 0.3))
  with open(tmp_path / 'b' / 'metrics.jsonl', 'a') as f:
    for step, acc in ((0, 0.1), (40, 0.85), (60, 0.92), (100, 0.88)):
      f.write(json.dumps({'step': step, 'value': acc,
                          'name': 'eval/noisy_acc_vs_noisy_label'}) + '\n')
  config = json.load(open(tmp_path / 'b' / 'config.json'))
  config['measurements']['eval'] = {'type': 'evaluation'}
  json.dump(config, open(tmp_path / 'b' / 'config.json', 'w'))
  drawn = _plot(monkeypatch, 'fig_shares', str(tmp_path))
  ax = drawn['shares'].axes[0]
  line = next(l for l in ax.get_lines() if l.get_label() == 'f_p (pristine)')
  np.testing.assert_allclose(line.get_ydata(), [0.8, 0.75, 0.7, 0.5, 0.3])
  span, = [p for p in ax.patches if p.get_label().startswith('noisy labels')]
  assert span.get_x() == 60
  assert span.get_x() + span.get_width() == ax.get_xlim()[1]


def test_coherence_against_loss_pairs_each_probe_with_its_own_loss(
    tmp_path, monkeypatch):
  """The path: at the steps every seed logged both (a step with only one of
  them is left out), the seeds' geometric mean of (mean loss, m-coherence),
  each a running median of 5 probes; checked against a naive loop."""
  losses = {0: (2.3, 1.0, 0.5, 0.1, 0.05, 0.02, 0.01),
            1: (2.1, 1.2, 0.4, 0.2, 0.04, 0.03, 0.02)}
  coherences = {0: (40.0, 9.0, 3.0, 6.0, 2.0, 1.5, 1.2),
                1: (30.0, 12.0, 4.0, 2.0, 3.0, 1.0, 1.1)}
  steps = (0, 10, 20, 30, 40, 50, 60)
  for seed in (0, 1):
    path = str(tmp_path / f'seed{seed}')
    os.makedirs(path)
    json.dump({'seed': seed, 'noise': {'rate': 0.5},
               'measurements': {'probe': {'type': 'coherence', 'm': 50}}},
              open(os.path.join(path, 'config.json'), 'w'))
    rows = [{'step': s, 'name': 'probe/clean/mean_loss', 'value': v}
            for s, v in zip(steps, losses[seed])]
    rows += [{'step': s, 'name': 'probe/clean/m_coherence', 'value': v}
             for s, v in zip(steps, coherences[seed])
             if (seed, s) != (1, 20)]  # seed 1 logged no m-coherence at 20
    with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in rows)
  drawn = _plot(monkeypatch, 'fig_coherence_loss', str(tmp_path))
  ax = drawn['coherence_loss'].axes[0]
  line = next(l for l in ax.get_lines() if l.get_label() == 'clean')
  kept = [i for i, s in enumerate(steps) if s != 20]
  for got, values in ((line.get_xdata(), losses),
                      (line.get_ydata(), coherences)):
    mean = [np.sqrt(values[0][i] * values[1][i]) for i in kept]
    smooth = [np.median(mean[max(0, i - 2):i + 3]) for i in range(len(mean))]
    np.testing.assert_allclose(got, smooth)
  assert ax.get_xscale() == ax.get_yscale() == 'log'
  assert len(ax.texts) == 2  # two arrows along the path
