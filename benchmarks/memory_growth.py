"""Does a training process's memory grow? RSS over a long run, its floors and their slope.

    python benchmarks/memory_growth.py --steps 3000 --json memory.json

Trains the tiny network of tests/test_reliability.py's memory test (FCN-32s, fc_depth 16,
32x32 crops of batch 1, on generated demo records unless --dataset_train is given) in a
process of its own, reads the RSS that training logs every --log_every steps
(train/history.jsonl, `rss_mb`), and prints, per tenth of the run, the median, the lowest and
the highest sample, and the slope of the medians over the second half in MB per 1000 steps.
The allocator's swings move single samples both ways (up to 70 MB up, 45 MB down) and back; a
leak lifts the median. The memory test decides on the same medians; this is where its
threshold comes from. `--rss_json FILE` recomputes the figures from an earlier --json file
instead of training.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.data.conversion import convert_pairs, make_label_spec  # noqa: E402
from utils.data.demo import CLASS_NAMES, write_demo_dataset  # noqa: E402
from utils.data.layouts import camvid_pairs  # noqa: E402
from utils.training.monitoring import read_jsonl  # noqa: E402

TINY = ['--config', os.path.join(ROOT, 'configs', 'demo.yaml'), '--model', 'fcn32s',
        '--fc_depth', '16', '--crop_size', '32,32', '--batch_size', '1', '--crf', 'false']
PARTS = 10


def demo_records(folder):
    data = write_demo_dataset(os.path.join(folder, 'data'), num_train=12, num_val=3, height=64,
                              width=80, seed=1)
    path = os.path.join(folder, 'train.record')
    convert_pairs(camvid_pairs(data, 'train'), path, make_label_spec(len(CLASS_NAMES)),
                  log=lambda *_: None)
    return path


def levels(rss, parts=PARTS):
    """[(first step, last step, median, lowest, highest RSS)] of each of `parts` equal spans of
    the samples."""
    steps = sorted(rss)
    size = max(len(steps) // parts, 1)
    spans = [steps[i:i + size] for i in range(0, len(steps) - size + 1, size)]
    return [(span[0], span[-1], statistics.median(rss[s] for s in span),
             min(rss[s] for s in span), max(rss[s] for s in span)) for span in spans]


def slope_per_1000(points):
    """Least-squares slope of [(step, MB)] in MB per 1000 steps."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return 1000 * sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def train_and_read_rss(args):
    """{step: RSS MB} of a training of args.steps steps in a process of its own."""
    os.makedirs(args.work_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as folder:
        records = args.dataset_train or demo_records(folder)
        out = os.path.join(folder, 'run')
        subprocess.run([sys.executable, os.path.join(ROOT, 'train.py')] + TINY + [
            '--dataset_train', records, '--output_dir', out, '--max_steps', str(args.steps),
            '--log_every', str(args.log_every), '--save_every', str(10 * args.steps)],
            check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return {h['step']: h['rss_mb']
                for h in read_jsonl(os.path.join(out, 'train', 'history.jsonl'))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--log_every', type=int, default=20)
    p.add_argument('--dataset_train', help='records to train on (default: generated demo ones)')
    p.add_argument('--work_dir', default=os.path.join(ROOT, 'build', 'memory_growth'),
                   help='where the run goes (replaced)')
    p.add_argument('--json', help='write the figures here')
    p.add_argument('--rss_json', help='an earlier --json file: recompute its figures, no run')
    args = p.parse_args(argv)
    if args.rss_json:
        with open(args.rss_json) as f:
            rss = {int(step): mb for step, mb in json.load(f)['rss_mb'].items()}
        steps = max(rss)
    else:
        rss, steps = train_and_read_rss(args), args.steps
    spans = levels(rss)
    second_half = [((a + b) / 2, median) for a, b, median, _, _ in spans[len(spans) // 2:]]
    slope = slope_per_1000(second_half)
    for a, b, median, low, high in spans:
        print('steps %5d-%5d: median %.1f MB, lowest %.1f, highest %.1f' % (a, b, median, low,
                                                                              high))
    print('Medians, second half: slope %+.2f MB per 1000 steps; first tenth %.1f, last %.1f MB'
          % (slope, spans[0][2], spans[-1][2]))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'steps': steps, 'rss_mb': rss, 'levels': spans,
                       'slope_of_medians_mb_per_1000_steps': slope}, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
