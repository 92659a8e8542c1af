"""m-coherence against the probe set's own loss, one panel per setting.

    python -m experiments.fig_coherence_loss SWEEP_DIR --out plots/

Each probe measures the mean loss of its m examples with the same params
as their m-coherence (`probe/{set}/mean_loss`), so a run traces a path from
the initial loss (right) down as training fits the examples: where along
the way the gradients agree, without the step axis's dependence on the lr
and batch. Clean (solid), noisy (dashed) and test (dotted) probe sets; one
line per seed (a path has no mean across seeds), a dot at the first probe;
log axes, the gray line the orthogonal baseline 1.
"""
from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = "m-coherence against the probe set's loss"


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'coherence', 'coherence_loss'):
    return None
  groups = runs_lib.settings(runs)
  fig, axes = runs_lib.panels(len(groups), sharey=True)
  for ax, (label, members) in zip(axes, groups):
    runs_lib.title(ax, runs_lib.setting_title(label, members))
    drawn = False
    for probe, style in runs_lib.PROBE_STYLE.items():
      for i, run in enumerate(members):
        loss = run.series.get(run.key('coherence', f'{probe}/mean_loss'))
        mc = run.series.get(run.key('coherence', f'{probe}/m_coherence'))
        if not loss or not mc:
          continue
        # The two are logged together; keep the steps both have.
        at = dict(zip(*mc))
        pairs = [(v, at[s]) for s, v in zip(*loss) if s in at]
        x, y = zip(*pairs)
        ax.plot(x, y, lw=1, label=probe if i == 0 else f'_{probe}', **style)
        ax.plot(x[:1], y[:1], 'o', ms=3, color=style['color'],
                label='_start')
        drawn = True
    if not drawn:
      runs_lib.note(ax, 'no probe logged its loss')
      continue
    ax.axhline(1.0, color='gray', lw=0.8, label='_1')
    ax.set(xscale='log', yscale='log', xlabel='probe set mean loss')
  runs_lib.ylabel(axes, 'm-coherence')
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'coherence_loss')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
