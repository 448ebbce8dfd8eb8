"""Shared fixtures: a fresh graph per test, fixed seeds, tiny demo records, the shared data."""
import contextlib
import importlib.util
import io
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback

import numpy as np
import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# On a GPU, sessions take memory as they need it, so subprocess jobs of the tests find some.
os.environ.setdefault('TF_FORCE_GPU_ALLOW_GROWTH', 'true')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def pin_to_own_cores():
    """Under pytest-xdist (`-n 2`, pytest.ini), each worker process keeps to its own share of
    the CPUs before TensorFlow starts, so its thread pools (sized by the CPUs it may use) and
    the jobs it starts (which inherit the share) do not fight the other worker's for the same
    cores: oversubscribed oneDNN and Eigen pools spin and wait. A single process keeps all."""
    worker = os.environ.get('PYTEST_XDIST_WORKER', '')
    count = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
    if worker.startswith('gw') and 1 < count <= len(cpus):
        os.sched_setaffinity(0, cpus[int(worker[2:]) % count::count])


pin_to_own_cores()
from utils.startup import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()
import tensorflow.compat.v1 as tf  # noqa: E402

from utils.data.conversion import convert_pairs, make_label_spec  # noqa: E402
from utils.data.layouts import camvid_pairs  # noqa: E402
from utils.data.demo import write_demo_dataset  # noqa: E402

tf.disable_eager_execution()
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
CAMVID_DIR = os.path.join(SHARED, 'data', 'camvid')
HED_CHECKPOINT = os.path.join(SHARED, 'pretrained', 'vgg_16_hed_conv.ckpt')
DEMO_NUM_CLASSES = 4


@pytest.fixture(scope='session', autouse=True)
def private_temp_folder(tmp_path_factory):
    """The temporaries of the tests' jobs (TensorFlow's __autograph_generated_file*.py, which a
    job killed with -9 never removes) go to a folder of the test session, removed at its end,
    not to the system temp folder."""
    path = str(tmp_path_factory.mktemp('tmp'))
    saved = os.environ.get('TMPDIR'), tempfile.tempdir
    os.environ['TMPDIR'] = tempfile.tempdir = path  # subprocesses inherit it
    yield path
    if saved[0] is None:
        os.environ.pop('TMPDIR', None)
    else:
        os.environ['TMPDIR'] = saved[0]
    tempfile.tempdir = saved[1]
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_graph():
    """Each test builds into its own default graph with fixed seeds."""
    random.seed(0)
    np.random.seed(0)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        yield graph


@pytest.fixture(scope='session')
def demo_records(tmp_path_factory):
    """Tiny demo dataset (12 train, 3 val, 64x80) converted to TFRecords: (train, val) paths."""
    root = tmp_path_factory.mktemp('demo')
    data_dir = write_demo_dataset(str(root / 'data'), num_train=12, num_val=3, height=64,
                                  width=80, seed=1)
    paths = []
    for split in ('train', 'val'):
        path = str(root / (split + '.record'))
        convert_pairs(camvid_pairs(data_dir, split), path, make_label_spec(DEMO_NUM_CLASSES),
                      log=lambda *_: None)
        paths.append(path)
    return tuple(paths)


def run_process(script, *args, timeout=600, env=None, cwd=ROOT):
    """Runs a script of the repository in its own process, as a user would: (exit code,
    stdout + stderr). For what only a process shows: signals, its environment, start-up."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, script)] + list(args),
                            capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)
    return result.returncode, result.stdout + result.stderr


_JOB_MODULES = {}


def job_module(script):
    """A job script (train.py, benchmarks/ablation.py, ...) loaded as a module, once."""
    if script not in _JOB_MODULES:
        name = '_job_' + os.path.splitext(script)[0].replace('/', '_')
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, script))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _JOB_MODULES[script] = module
    return _JOB_MODULES[script]


def run_script(script, *args, timeout=600, env=None, cwd=ROOT):
    """Runs a job script's main(argv) in this process as its command line would, without the
    seconds a new process spends importing TensorFlow: (exit status, stdout + stderr).
    With `env`, the script runs in its own process (run_process). `cwd`: the working folder
    (the repository's by default)."""
    if env is not None:
        return run_process(script, *args, timeout=timeout, env=env, cwd=cwd)
    result = run_in_process(script, *args, cwd=cwd)
    return result.returncode, result.stdout + result.stderr


def run_in_process(script, *args, cwd=ROOT):
    """A job script's main(argv) run in this process: a CompletedProcess (returncode, stdout,
    stderr).

    The job gets a graph of its own, `cwd` as working folder, sys.argv, and a fresh
    log configuration (make_logger's); its signal handlers and the log handlers are put back
    afterwards. An exception that escapes main() is status 1 with its traceback on stderr, as
    Python's would be."""
    module = job_module(script)
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.argv, os.getcwd(),
             {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)})
    root.handlers = []
    sys.argv = [script] + list(args)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                tf.Graph().as_default():
            try:
                code = module.main(list(args))
            except SystemExit as e:  # argparse's errors (2) and --help (0)
                code = e.code if isinstance(e.code, int) else (1 if e.code else 0)
            except Exception:  # noqa: BLE001 - what Python prints for an uncaught error
                traceback.print_exc()
                code = 1
    finally:
        root.handlers, sys.argv = saved[0], saved[2]
        root.setLevel(saved[1])
        os.chdir(saved[3])
        for signum, handler in saved[4].items():
            signal.signal(signum, handler)
    return subprocess.CompletedProcess([script] + list(args), code or 0, out.getvalue(),
                                       err.getvalue())


def require(path, what):
    if not os.path.exists(path) and not os.path.exists(path + '.index'):
        pytest.skip('%s not found at %s (shared data absent)' % (what, path))


DEMO_CONFIG = os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')


def tiny_config(**overrides):
    """The demo FCN at its smallest (FCN-32s, fc_depth 8, 32x32 crops of batch 1, no CRF),
    with `overrides` (config keys -> values)."""
    from utils.config import resolve_config
    values = {'model': 'fcn32s', 'fc_depth': '8', 'crop_size': '32,32', 'batch_size': '1',
              'crf': 'false', 'log_every': '1'}
    values.update({k: str(v) for k, v in overrides.items()})
    return resolve_config(DEMO_CONFIG, values)


def train_demo_run(train_record, out, max_steps):
    """Trains FCN-8s (fc_depth 16, 64x64 crops of batch 2) on the demo records into `out`, in
    a graph of its own; returns `out`."""
    from utils.config import resolve_config
    from utils.training.trainer import train
    overrides = {'dataset_train': train_record, 'output_dir': out, 'max_steps': str(max_steps),
                 'fc_depth': '16', 'crop_size': '64,64', 'batch_size': '2'}
    with tf.Graph().as_default():
        train(resolve_config(DEMO_CONFIG, overrides), log=lambda *_: None)
    return out


@pytest.fixture(scope='session')
def trained_run(demo_records, tmp_path_factory):
    """A tiny FCN-8s run (a few steps on the demo records): its output dir."""
    return train_demo_run(demo_records[0], str(tmp_path_factory.mktemp('run') / 'run'), 3)


BROWSER_HARNESS = """<!DOCTYPE html><html><body><iframe id="r" src="%s" width="1200" height="900">
</iframe><pre id="out"></pre><script>
document.getElementById('r').onload = function () {
  var d = this.contentDocument, images = Array.from(d.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  document.getElementById('out').textContent = JSON.stringify({images: images.length,
    broken: broken.map(function (i) { return i.getAttribute('src'); }),
    rows: d.querySelectorAll(%s).length});
};
</script></body></html>"""


def chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip('no Chromium here (Debian: apt-get install chromium)')


def page_in_browser(page, tmp_path, rows_selector):
    """Opens an offline page in headless Chromium: a screenshot must render and the console
    hold no error of the page's; returns what the page showed: {'images': count, 'broken':
    [src of images that did not load], 'rows': elements matching `rows_selector`}."""
    import json
    import re
    flags = [chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
             '--disable-background-networking', '--allow-file-access-from-files',
             '--user-data-dir=%s' % (tmp_path / 'profile'), '--enable-logging=stderr', '--v=0']
    screenshot = str(tmp_path / 'page.png')
    shot = subprocess.run(flags + ['--window-size=1200,2400', '--screenshot=%s' % screenshot,
                                   'file://' + page], capture_output=True, text=True,
                          timeout=120)
    assert os.path.getsize(screenshot) > 10000, shot.stderr[-2000:]
    console = [line for line in shot.stderr.splitlines() if 'CONSOLE' in line]
    assert not [line for line in console if os.path.basename(page) in line], console
    harness = tmp_path / 'harness.html'
    harness.write_text(BROWSER_HARNESS % ('file://' + page, json.dumps(rows_selector)))
    dump = subprocess.run(flags + ['--virtual-time-budget=10000', '--dump-dom',
                                   'file://%s' % harness], capture_output=True, text=True,
                          timeout=120)
    found = re.search(r'<pre id="out">(.*?)</pre>', dump.stdout, re.S)
    assert found and found.group(1), dump.stderr[-2000:]
    return json.loads(found.group(1).replace('&quot;', '"'))
