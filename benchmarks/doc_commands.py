"""The docs' long commands run in full, each timed: the figures README.md
states ("about 3 minutes on 2 CPU cores") come from here.

    python -m benchmarks.doc_commands [--only TEXT] [--dir DIR]

Runs, in document order, every command of README.md's and docs/' blocks
marked `run` or `long` (tests/doc_blocks.py) that trains or takes minutes:
launch.py / cgjax-train lines and `python -m` lines of `long` blocks, as
written, in DIR (default a new folder under /tmp; the checkout's top level
linked in, the example lab written out). The suite checks the same lines
in seconds (--check, --help); this runs them. Prints each command's exit
code and wall time, and the machine (cores, load).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from tests import doc_blocks
from tests.conftest import ROOT


def _commands(only: str):
  for block in doc_blocks.all_blocks():
    if block.kind not in ('run', 'long') or block.lang == 'python':
      continue
    for line in block.commands():
      line = line.split(' #')[0].strip()
      if line.startswith(doc_blocks.SCHEDULERS) or (
          line.startswith('pip install') and '&&' not in line):
        continue
      line = line.split('&& ', 1)[1] if line.startswith('pip install') else line
      heavy = doc_blocks.LAUNCH.search(line + ' ') or (
          block.kind == 'long' and 'python -m' in line)
      if heavy and 'pytest' not in line and '--print-commands' not in line \
          and only in line:
        yield block.where, line


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--only', default='', help='commands containing this')
  parser.add_argument('--dir', default='')
  args = parser.parse_args()
  box = args.dir or tempfile.mkdtemp(prefix='cgjax-doc-commands-')
  doc_blocks.docs_folder(box)
  print(f'{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; in {box}',
        flush=True)
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
             PATH=f'{os.path.dirname(sys.executable)}:{os.environ["PATH"]}')
  for where, command in _commands(args.only):
    start = time.perf_counter()
    code = subprocess.run(command, shell=True, cwd=box, env=env,
                          executable='/bin/bash',
                          stdout=subprocess.DEVNULL).returncode
    print(f'{where}: exit {code}, {time.perf_counter() - start:.0f} s: '
          f'{command}', flush=True)


if __name__ == '__main__':
  main()
