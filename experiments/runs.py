"""Loading runs for the figure scripts: sweep dirs or workdirs -> the `Run`s
of cgjax.runs (the one reader of a workdir), labeled and sorted.

Every figure script takes paths that are either run workdirs (with
metrics.jsonl) or sweep dirs (whose subdirectories are), and `--out DIR`.
"""
import argparse
import json
import os
import textwrap

import matplotlib
import matplotlib.ticker
import numpy as np
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from cgjax import coherence  # pylint: disable=wrong-import-position
from cgjax import runs as runs_api  # pylint: disable=wrong-import-position
from cgjax import storage  # pylint: disable=wrong-import-position
from cgjax import workdir as workdir_lib  # pylint: disable=wrong-import-position

PROBES = ('clean', 'noisy', 'test')
# Fixed per probe set, so a run without clean or noisy examples keeps them;
# 'train' is the mixed set (clean and noisy) of the ImageNet configs.
PROBE_STYLE = {'clean': dict(ls='-', color='C0'),
               'noisy': dict(ls='--', color='C1'),
               'test': dict(ls=':', color='C2'),
               'train': dict(ls='-.', color='C3')}


def find(paths: list[str]) -> list[runs_api.Run]:
  """Runs under `paths` (workdirs or sweep dirs) that logged metrics, sorted
  by noise rate, then in sweep order."""
  found = []  # (workdir, sweep overrides or None)
  for path in paths:
    try:
      found += [(w, o) for w, o in runs_api.find_workdirs(path)
                if workdir_lib.has_metrics(w)]
    except ValueError as err:
      raise SystemExit(f'error: {err}') from None
  if not found:
    raise SystemExit(f'error: no run (a dir with metrics.jsonl) in {paths}')
  try:
    runs = [runs_api.Run(w, o or {}) for w, o in found]
    for run, label in zip(runs, labels(runs, [o for _, o in found])):
      run.label = label
  except ValueError as err:  # a config.json refused (cgjax.runs)
    raise SystemExit(f'error: {err}') from None
  return sorted(runs, key=lambda r: r.noise)


def labels(runs, overrides=None) -> list[str]:
  """Each run labeled by its sweep overrides where every run has them, else
  by the config fields that differ between the runs; seeds aside, so that
  seeds of one setting share a label. 'noise 0.5' where only the noise rate
  differs."""
  def short(key):
    return key.split('.', 1)[-1]

  flat = [{k: json.dumps(v) for k, v in coherence.flatten(
      r.config.to_dict(), sep='.').items()} for r in runs]
  if overrides and all(o is not None for o in overrides):
    chosen = [{k: v for k, v in o.items() if k != 'seed'} for o in overrides]
  else:
    fields = sorted({k for f in flat for k in f if k != 'seed'
                     and len({g.get(k) for g in flat}) > 1})
    chosen = [{k: json.loads(f[k]) if k in f else '-' for k in fields}
              for f in flat]
  out = []
  for run, c in zip(runs, chosen):
    if list(c) == ['noise.rate'] or not c:
      out.append(f'noise {run.noise:g}')
    else:
      out.append(', '.join(str(v) if k == 'arg' else f'{short(k)}={v}'
                           for k, v in c.items()))
  return out


def settings(runs) -> list[tuple[str, list[runs_api.Run]]]:
  """Runs grouped by label (seeds of one setting together), in order."""
  groups = {}
  for run in runs:
    groups.setdefault(run.label, []).append(run)
  return list(groups.items())


def seed_columns(members) -> list[str]:
  """Per-run column headers of a table over seeds: 'seed S', and the
  workdir's name too where runs share a seed (repeats, not other seeds)."""
  seeds = [r.config['seed'] for r in members]
  return [f'seed {s}' if seeds.count(s) == 1 else
          f'seed {s} ({storage.basename(r.workdir)})'
          for s, r in zip(seeds, members)]


def over_seeds(values, members, digits: int = 4) -> tuple[str, str]:
  """(mean, spread = (max - min) / 2) of per-run values as table cells; a
  spread needs two distinct seeds ('-': one seed, or repeats of one), and
  missing values (nan: a run without that metric) are left out."""
  values = np.asarray(values, float)
  kept = ~np.isnan(values)
  if not kept.any():
    return '-', '-'
  seeds = {r.config['seed'] for r, k in zip(members, kept) if k}
  with np.errstate(invalid='ignore'):  # inf - inf: never-learned medians
    spread = (values[kept].max() - values[kept].min()) / 2
  return (f'{values[kept].mean():.{digits}g}',
          f'{spread:.2g}' if len(seeds) > 1 else '-')


def why_no_probe(run, probe: str) -> str:
  """Why a run has no `probe` set: a set with fewer candidates than m is
  skipped by the coherence measurement (noisy ones at noise 0: none)."""
  if probe == 'noisy' and run.noise == 0:
    return 'no noisy examples at noise 0'
  m = run.measurement_config('coherence').get('m')
  return f'fewer {probe} examples than m = {m}'


def setting_title(label: str, members) -> str:
  """A setting's panel title: its label, and how many seeds it averages."""
  return label if len(members) == 1 else f'{label} (mean of {len(members)} seeds)'


def setting_colors(n: int) -> list:
  """One color per setting, from viridis (dark to light, in setting order):
  apart from the probe sets' C0-C3, so that a setting is never mistaken for
  a probe set in a figure that has both."""
  return [plt.cm.viridis(x) for x in np.linspace(0, 0.85, n)]


def overlay(ax, groups, type_name: str, metric: str, ylabel: str) -> bool:
  """`metric` of a measurement type of every setting in one panel, one color per setting (seeds:
  mean and band), with its own legend beside it; False (nothing drawn) where fewer
  than two settings measured it."""
  measured = [(label, metric_series(members, type_name, metric))
              for label, members in groups]
  measured = [(label, series) for label, series in measured if series]
  if len(measured) < 2:
    return False
  for (label, series), color in zip(measured,
                                    setting_colors(len(measured))):
    mean_and_spread(ax, series, label=label, color=color)
  ax.set(xlabel='step', ylabel=ylabel)
  title(ax, f'{ylabel}, every setting')
  ax.legend(fontsize=6, frameon=False, loc='upper left',
            bbox_to_anchor=(1.02, 1))  # beside: inside, it hid the lines
  return True


def common_steps(series) -> tuple[list, np.ndarray]:
  """(the steps every (steps, values) series has, values [series, step])
  of seeds whose schedules may differ (a resumed or unfinished seed)."""
  steps = sorted(set.intersection(*(set(s) for s, _ in series)))
  lookups = [dict(zip(*s)) for s in series]  # one per series, not per step
  return steps, np.array([[at[t] for t in steps] for at in lookups], float)


# A sparse series' marker, by the line style it would have had: probe sets
# stay apart without lines drawn across the gaps of a log axis.
SPARSE_MARKER = {'-': 'o', '--': 's', ':': '^', '-.': 'D'}


def mean_and_spread(ax, series, label=None, **style):
  """The mean of several (steps, values) series (seeds of one setting) at the
  steps all of them have, with a band from the lowest to the highest; one
  line for one series. A series of a dozen points or fewer (probe.all_every)
  is drawn as its points (whiskers for the band). Returns whether anything
  was drawn."""
  if not series:
    return False
  steps, values = common_steps(series)
  if len(steps) <= 12:
    marker = SPARSE_MARKER.get(style.pop('ls', '-'), 'o')
    # Unclipped: a marker at step 0 or at an axis limit (accuracy 1) was
    # cut in half by the spine.
    ax.plot(steps, values.mean(0), label=label, marker=marker, ls='none',
            markersize=4, clip_on=False, **style)
    if len(series) > 1:
      ax.vlines(steps, values.min(0), values.max(0), lw=1, alpha=0.5,
                color=style.get('color'))
    return True
  ax.plot(steps, values.mean(0), label=label, **style)
  if len(series) > 1:
    ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2,
                    color=style.get('color'), lw=0)
  return True


def metric_series(runs, type_name: str, metric: str) -> list:
  """(steps, values) of a measurement type's `metric` (its key below the
  measurement's name) in each run that logged it."""
  keys = [(r, r.key(type_name, metric)) for r in runs]
  return [r.series[k] for r, k in keys if k in r.series]


def measuring(runs, type_name: str, figure: str) -> bool:
  """Whether any run has a measurement of `type_name`; if none does, says
  so (the figure is then not drawn: no grid of empty panels)."""
  if any(run.measurement(type_name) for run in runs):
    return True
  print(f'{figure}: not drawn, no run has a {type_name} measurement')
  return False


class _StepTicks(matplotlib.ticker.Locator):
  """0, 10, 100, ... up to the axis' end: no tick at 1, whose label
  collided with 0's on the symlog axis."""

  def __call__(self):
    _, high = self.axis.get_view_interval()
    return [0] + [10 ** k for k in range(1, 12) if 10 ** k <= high]


def step_axis(ax):
  """Steps on a log axis that still shows step 0: symlog, linear in [0, 1]
  (drawing step 0 at x = 1 made a vertical segment up to step 1), ticks
  labeled as plain step counts."""
  ax.set_xscale('symlog', linthresh=1, linscale=0.4)
  # A little room left of step 0, so that its marker clears the spine.
  ax.set_xlim(left=-0.15)
  ax.xaxis.set_major_locator(_StepTicks())
  ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
      lambda x, _: f'{x:,.0f}'))


def few_ticks(ax):
  """Y ticks that stay legible in a small panel: linear, at most 4; log, at
  1 and 3 of each decade; labeled in 2 significant digits, no minor labels
  (matplotlib's crowded 2x10^-3, 3x10^-3, ... on spans near a decade)."""
  # 2 significant digits, written out where short (-300, not -3e+02).
  label = matplotlib.ticker.FuncFormatter(
      lambda y, _: f'{float(f"{y:.2g}"):g}')
  if ax.get_yscale() == 'log':
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 3.0)))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  else:
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=4))
  ax.yaxis.set_major_formatter(label)


def title(ax, text: str):
  """A panel title wrapped to the panel's width, so neighbours never overlap."""
  width = ax.get_position().width * ax.figure.get_size_inches()[0]
  ax.set_title(textwrap.fill(text, max(12, int(width * 13))), fontsize=9)


def note(ax, text):
  """An empty panel's explanation, instead of blank axes, wrapped to the
  panel's width."""
  width = ax.get_position().width * ax.figure.get_size_inches()[0]
  ax.text(0.5, 0.5, textwrap.fill(text, max(12, int(width * 11))),
          ha='center', va='center', fontsize=8, transform=ax.transAxes)
  # Tick marks hidden on this panel only (set_yticks([]) cleared those of
  # every panel sharing the axis), and the y tick labels that sharey kept on
  # this first-column panel alone shown on its drawn neighbours instead.
  ax.is_note = True
  ax.tick_params(left=False, labelleft=False, bottom=False,
                 labelbottom=False)
  for other in ax.get_shared_y_axes().get_siblings(ax):
    if not getattr(other, 'is_note', False):
      other.tick_params(labelleft=True)


def save(fig, out_dir: str, name: str) -> str:
  """Writes out_dir/name.png and .pdf; returns the PNG path."""
  storage.makedirs(out_dir)
  laid_out = fig.legends or any(ax.get_legend() for ax in fig.axes)
  if fig.get_layout_engine() is None and not laid_out:  # legend_once did
    fig.tight_layout()
  for ext in ('png', 'pdf'):
    storage.save_figure(fig, storage.join(out_dir, f'{name}.{ext}'), dpi=110,
                        bbox_inches='tight')  # legends beside a panel stay whole
  plt.close(fig)
  path = storage.join(out_dir, f'{name}.png')
  print(f'wrote {path} (+.pdf)')
  return path


def write_text(out_dir: str, name: str, text: str) -> str:
  """Prints `text` and writes it to out_dir/name; returns the path."""
  print(text)
  storage.makedirs(out_dir)
  path = storage.join(out_dir, name)
  storage.write_atomic(path, text + '\n')
  print(f'wrote {path}')
  return path


def main(plot, doc: str):
  """CLI of a figure script: `plot(runs, out_dir)` on the given paths."""
  parser = argparse.ArgumentParser(description=doc.split('\n')[0])
  parser.add_argument('paths', nargs='+', help='workdirs or sweep dirs')
  parser.add_argument('--out', default='plots')
  args = parser.parse_args()
  plot(find(args.paths), args.out)


def legend_once(fig, axes):
  """One legend with every labeled line and patch (a shaded span): in the
  grid's unused slot where there is one (inside the figure), else below the
  panels in as many rows as the figure's width needs (none is cut off)."""
  labels = {}
  for ax in axes:
    for line in ax.get_lines() + list(ax.patches):
      if not line.get_label().startswith('_'):
        labels.setdefault(line.get_label(), line)
  spare = getattr(fig, 'spare_axes', [])
  if spare:
    slot = spare[0]
    slot.set_visible(True)
    slot.axis('off')
    slot.legend(labels.values(), labels.keys(), fontsize=8, loc='center',
                frameon=False)
    if fig.get_layout_engine() is None:
      fig.tight_layout()
    return
  if len(axes) == 1:  # a lone panel: the legend beside it (save() widens
    fig.tight_layout()  # the canvas to hold it)
    # Past a twin axis' ticks and label (fig_rho's right axis), which it hid.
    twinned = any(other is not axes[0] and other.get_position().bounds
                  == axes[0].get_position().bounds for other in fig.axes)
    axes[0].legend(labels.values(), labels.keys(), fontsize=7,
                   loc='center left',
                   bbox_to_anchor=(1.3 if twinned else 1.02, 0.5),
                   frameon=False)
    return
  width, height = fig.get_size_inches()
  longest = max((len(label) for label in labels), default=1)
  ncol = max(1, min(len(labels), int(width / (0.3 + 0.075 * longest))))
  rows = -(-len(labels) // ncol)
  constrained = isinstance(fig.get_layout_engine(),
                           matplotlib.layout_engine.ConstrainedLayoutEngine)
  # A constrained layout makes room for an 'outside' legend itself (and
  # tight_layout would replace it, with a warning).
  fig.legend(labels.values(), labels.keys(), ncol=ncol, fontsize=8,
             frameon=False,
             loc='outside lower center' if constrained else 'lower center')
  if not constrained:
    fig.tight_layout(rect=(0, min(0.5, rows * 0.22 / height + 0.02), 1, 1))


# Panels per row at most: a figure stays readable at page width (5 across
# were strips of 18 inches); more panels wrap to further rows.
PANELS_PER_ROW = 3


def panels(n: int, width: float = 3.6, height: float = 3.2, **kw):
  """n subplots in as few rows of at most PANELS_PER_ROW as hold them, the
  rows as full as can be (6 panels: 2 x 3, never 5 + 1); returns (fig, the n
  axes in reading order). The unused slot, if any, is kept hidden as
  `fig.spare_axes` for legend_once."""
  rows = -(-n // PANELS_PER_ROW)
  cols = -(-n // rows)
  fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows),
                           squeeze=False, **kw)
  fig.spare_axes = list(axes.ravel()[n:])
  for ax in fig.spare_axes:
    ax.set_visible(False)
  return fig, axes.ravel()[:n]


def ylabel(axes, text: str):
  """`text` on the y axis of each row's first panel."""
  for ax in axes:
    if ax.get_subplotspec().is_first_col():
      ax.set_ylabel(text)
