"""One HTML page with every figure of a sweep and a table of final numbers.

    python -m experiments.report SWEEP_DIR [SWEEP_DIR ...] [--out FIRST/report]

Runs each figure script that the runs' measurements declare (their
`FIGURES`: coherence, accuracy, per-layer heatmaps, ...) on the sweep's runs
and writes OUT/index.html next to the PNGs and PDFs; open it in a browser.
The table gives, per run: the final value of each headline metric its
measurements declare (accuracies, adjusted overfit, m-coherence), and the
peak m-coherence of each probe set with its step (the peak of a running median
over 5 consecutive probes: one unstable probe does not make a peak). Given
noise sweeps, one dir per seed, the page also has the claims table of
experiments/claims.py.
"""
import argparse
import html
import importlib
import io
import os

import PIL.Image

from cgjax import measurements
from cgjax import plugins
from cgjax import storage

from . import claims
from . import runs as runs_lib


# The page as a figure set: figures fill its width, two narrow ones side by
# side (at their native 460-720 px two thirds of a 1400 px page was blank).
STYLE = ('body{font-family:sans-serif;margin:16px}'
         '.figures{display:grid;grid-template-columns:1fr 1fr;gap:12px 24px}'
         'figure{margin:0}figure.wide{grid-column:1/-1}'
         'figure img{max-width:100%;height:auto;display:block}'
         'figure h2{font-size:1.15em;margin:14px 0 6px}'
         'figcaption{font-size:85%;color:#333}')
# A figure wider than this (pixels, at runs_lib.save's dpi: two panels
# across or more) spans both columns; a lone panel takes one (a 2 x 2 grid
# in one column had panels of 340 px).
WIDE_PX = 760
MAX_ZOOM = 1.25


def figure_modules(runs) -> list:
  """The figure modules that the runs' measurements declare (`FIGURES`:
  modules of this package, or module paths), in the measurements' order."""
  configs = {}
  for run in runs:
    configs.update({name: cfg.to_dict() for name, cfg in
                    run.config.measurements.items()})
  return [importlib.import_module(f'.{name}' if '.' not in name else name,
                                  __package__)
          for name in measurements.figures(configs)]


def table(runs) -> tuple[list[str], list[list[str]]]:
  """Per run: the final value of each headline metric its measurements
  declare, and the peak m-coherence of each probe set with its step."""
  headline = sorted({k for run in runs for k in measurements.headline_keys(
      run.config.measurements, run.series)})
  header = ['run', 'setting'] + headline + [
      f'peak m-coh {p} (step)' for p in runs_lib.PROBES]
  rows = []
  # The path below what all runs share: the trial, or seed dir / trial.
  top = os.path.commonpath([r.workdir for r in runs]) if len(runs) > 1 else ''
  for run in runs:
    name = (os.path.relpath(run.workdir, top) if top
            else os.path.basename(run.workdir))
    row = [name, run.label]
    for key in headline:
      v = run.final(key)
      # Three significant digits: rho is 0.001-0.03 where accuracies are
      # near 1 (three decimals left rho 0.005 or 0.000).
      row.append('-' if v != v else f'{v:.3g}')
    for probe in runs_lib.PROBES:
      v, step = run.peak(run.key('coherence', f'{probe}/m_coherence'))
      row.append('-' if step < 0 else f'{v:.2f} ({step})')
    rows.append(row)
  # Columns no run has (peak m-coherence without probes) are left out.
  keep = [i for i in range(len(header)) if any(r[i] != '-' for r in rows)]
  return [header[i] for i in keep], [[r[i] for i in keep] for r in rows]


def _html_table(header, rows) -> str:
  # Long metric keys break after '/' and '_' (12 columns fit 1400 px).
  breakable = lambda h: html.escape(h).replace('/', '/<wbr>').replace(
      '_', '_<wbr>')
  return ('<table border="1" cellpadding="4" style="border-collapse:collapse">'
          '<tr>' + ''.join(f'<th>{breakable(h)}</th>' for h in header)
          + '</tr>' + ''.join('<tr>' + ''.join(f'<td>{html.escape(c)}</td>'
                                               for c in r) + '</tr>'
                              for r in rows) + '</table>')


def _markdown_to_html(text: str) -> str:
  """A pipe table and the lines after it (claims.table's output)."""
  cells = lambda line: [c.strip() for c in line.strip().strip('|').split('|')]
  lines = text.splitlines()
  table_lines = [l for l in lines if l.startswith('|') and '---' not in l]
  rest = [l for l in lines if l and not l.startswith('|')]
  return (_html_table(cells(table_lines[0]), map(cells, table_lines[1:]))
          + ''.join(f'<p style="margin:2px">{html.escape(l)}</p>'
                    for l in rest))


def _claims(sweep_dirs) -> list[str]:
  """The claims section, where the dirs are noise sweeps: one per seed, or
  one with several seeds (`mnist_mlp.py:seeds=3 --sweep`)."""
  sweeps = []
  for sweep_dir in sweep_dirs:
    by_seed = {}
    for run in claims.finished(sweep_dir):
      if not run.label.startswith('noise '):
        return []  # settings differ in more than the noise rate
      by_seed.setdefault(run.config['seed'], []).append(run)
    sweeps += by_seed.values()
  try:
    if not any(claims.claim_rows(s) for s in sweeps):
      return []
    text = claims.table(sweeps)
  except ValueError as err:  # not one run per noise rate
    return [f'<h2>Claims</h2><p>not computed: {html.escape(str(err))}</p>']
  shown = {k for s in sweeps for k in claims.claim_rows(s)}
  about = ''.join(
      f'<li><b>{html.escape(k)}</b>: {html.escape(c.title)}. Statistic: '
      f'{html.escape(c.statistic)}, holds above {c.threshold:g}</li>'
      if c.above else
      f'<li><b>{html.escape(k)}</b>: {html.escape(c.title)}. Statistic: '
      f'{html.escape(c.statistic)}, holds below {c.threshold:g}</li>'
      for k, c in claims.CLAIMS.items() if k in shown)
  few = ('' if len(sweeps) >= 3 else
         f'<p><b>{len(sweeps)} seed(s) only: a claim is judged over 3 or more '
         'seeds; these rows are a preview.</b></p>')
  return ['<h2>Claims of the papers, per seed</h2>', few,
          '<p>Each statistic is on rho = (m-coherence - 1) / (m - 1) where it '
          'is a coherence, per seed over a window of probes; a claim holds '
          'where the 95% t-interval of the per-seed values clears its '
          'threshold (experiments/claims.py).</p>',
          f'<ul style="font-size:90%">{about}</ul>', _markdown_to_html(text)]


def build(sweep_dirs: list[str], out_dir: str) -> str:
  runs = runs_lib.find(sweep_dirs)
  settings = runs_lib.settings(runs)
  what = 'run' if len(runs) == 1 else 'sweep'
  parts = [f'<h1>cgjax {what} {html.escape(", ".join(sweep_dirs))}</h1>',
           f'<p>{len(runs)} run(s), {len(settings)} setting(s) (seeds of a '
           'setting share a label); every figure is also a PDF beside its '
           'PNG. The table: the last value of each headline metric that the '
           'measurements declare, and where probes ran, the highest running '
           'median of 5 probes of each set\'s m-coherence, with its '
           'step.</p>',
           _html_table(*table(runs))]
  parts += _claims(sweep_dirs)
  figures = []
  for module in figure_modules(runs):
    title = getattr(module, 'TITLE', module.__name__)
    png = module.plot(runs, out_dir)
    if png is None:  # the figure does not apply to these runs: no heading
      continue
    doc = html.escape(module.__doc__.split('\n\n', 2)[-1].strip())
    width, _ = PIL.Image.open(io.BytesIO(storage.read_bytes(png))).size
    # Enlarged at most by MAX_ZOOM: a narrow, tall figure (one setting's
    # layer heatmap) stretched to the column was a screen high, its text 2x.
    figures.append(
        f'<figure class="{"wide" if width > WIDE_PX else "half"}">'
        f'<h2>{html.escape(title)}</h2><img src="{storage.basename(png)}" '
        f'style="width:{round(width * MAX_ZOOM)}px">'
        f'<figcaption>{doc}</figcaption></figure>')
  parts.append(f'<div class="figures">{"".join(figures)}</div>')
  path = storage.join(out_dir, 'index.html')
  storage.write_atomic(
      path, '<!doctype html><meta charset="utf-8"><title>cgjax report</title>'
      f'<style>{STYLE}</style><body>' + '\n'.join(parts))
  print(f'wrote {path}')
  return path


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('sweep_dirs', nargs='+',
                      help='a sweep dir, or one per seed of the same sweep')
  parser.add_argument('--out', default='',
                      help='default: FIRST_SWEEP_DIR/report')
  args = parser.parse_args()
  plugins.search(os.getcwd(), 'the current directory')
  build(args.sweep_dirs,
        args.out or storage.join(args.sweep_dirs[0], 'report'))


if __name__ == '__main__':
  main()
