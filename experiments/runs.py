"""Loading runs for the figure scripts: sweep dirs or workdirs -> `Run`s.

Every figure script takes paths that are either run workdirs (with
metrics.jsonl) or sweep dirs (whose subdirectories are), and `--out DIR`.
"""
import argparse
import collections
import dataclasses
import json
import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from cgjax import workdir as workdir_lib  # pylint: disable=wrong-import-position

PROBES = ('clean', 'noisy', 'test')
# Fixed per probe set, so a run without clean or noisy examples keeps them.
PROBE_STYLE = {'clean': dict(ls='-', color='C0'),
               'noisy': dict(ls='--', color='C1'),
               'test': dict(ls=':', color='C2')}


@dataclasses.dataclass
class Run:
  workdir: str
  noise: float
  config: dict
  series: dict  # metric name -> (steps, values)

  @property
  def label(self) -> str:
    return f'noise {self.noise:g}'

  def final(self, name: str) -> float:
    steps, values = self.series.get(name, ((), ()))
    return values[-1] if values else float('nan')

  def peak(self, name: str) -> tuple[float, int]:
    """(max value, its step) of a metric; (nan, -1) when absent."""
    steps, values = self.series.get(name, ((), ()))
    if not values:
      return float('nan'), -1
    i = max(range(len(values)), key=values.__getitem__)
    return values[i], steps[i]


def load(workdir: str) -> Run:
  series = collections.defaultdict(lambda: ([], []))
  for row in workdir_lib.read_metrics(workdir):
    series[row['name']][0].append(row['step'])
    series[row['name']][1].append(row['value'])
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  return Run(workdir, float(config['noise']['rate']), config, dict(series))


def find(paths: list[str]) -> list[Run]:
  """Runs under `paths` (workdirs or sweep dirs), sorted by noise rate."""
  found = []
  for path in paths:
    if not os.path.isdir(path):
      raise SystemExit(f'error: {path!r} is not a directory (a workdir or a '
                       'sweep dir)')
    if os.path.exists(os.path.join(path, 'metrics.jsonl')):
      found.append(path)
    else:
      found += sorted(os.path.join(path, d) for d in os.listdir(path)
                      if os.path.exists(os.path.join(path, d, 'metrics.jsonl')))
  if not found:
    raise SystemExit(f'error: no run (a dir with metrics.jsonl) in {paths}')
  return sorted((load(w) for w in found), key=lambda r: r.noise)


def save(fig, out_dir: str, name: str) -> str:
  """Writes out_dir/name.png and .pdf; returns the PNG path."""
  os.makedirs(out_dir, exist_ok=True)
  if fig.get_layout_engine() is None and not fig.legends:
    fig.tight_layout()
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(out_dir, f'{name}.{ext}'), dpi=110)
  plt.close(fig)
  path = os.path.join(out_dir, f'{name}.png')
  print(f'wrote {path} (+.pdf)')
  return path


def main(plot, doc: str):
  """CLI of a figure script: `plot(runs, out_dir)` on the given paths."""
  parser = argparse.ArgumentParser(description=doc.split('\n')[0])
  parser.add_argument('paths', nargs='+', help='workdirs or sweep dirs')
  parser.add_argument('--out', default='plots')
  args = parser.parse_args()
  plot(find(args.paths), args.out)


def legend_once(fig, axes):
  """One figure legend with every line label of the panels."""
  labels = {}
  for ax in axes:
    for line in ax.get_lines():
      if not line.get_label().startswith('_'):
        labels.setdefault(line.get_label(), line)
  fig.legend(labels.values(), labels.keys(), loc='lower center',
             ncol=len(labels), fontsize=8, frameon=False)
  fig.tight_layout(rect=(0, 0.08, 1, 1))


def panels(n: int, width: float = 3.6, height: float = 3.2, **kw):
  """One subplot per run, in a row."""
  fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False,
                           **kw)
  return fig, axes[0]
