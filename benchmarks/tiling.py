"""Wall time and peak memory of tiled prediction on a 108-megapixel photo: predict.py --tile on a
12000x9000 JPEG with the CamVid FCN-8s, measured by /usr/bin/time -v as a user would run it.

    python benchmarks/tiling.py --work_dir runs/tiling_benchmark [--tile 512] [--tile_overlap 128]

It builds, once (then reuses), what it needs under WORK_DIR: a run of configs/camvid_fcn8s.yaml
trained one step on demo records (weights do not change the cost; no pretrained checkpoint is
needed) and a synthetic road scene of --height x --width (a demo scene upscaled, with grain), then
prints the wall time and the peak resident memory of the prediction. Checkpoints take about 1 GB:
delete WORK_DIR afterwards.
"""
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from utils.cli import job_parser, positive_int, run_job  # noqa: E402
from utils.data.conversion import convert_pairs, make_label_spec  # noqa: E402
from utils.data.demo import make_scene, write_demo_dataset  # noqa: E402
from utils.data.layouts import camvid_pairs  # noqa: E402
from utils.data.pixels import header_size  # noqa: E402
from utils.errors import JobError  # noqa: E402

CONFIG = os.path.join(ROOT, 'configs', 'camvid_fcn8s.yaml')
NUM_CLASSES = 11  # the config's; the demo scenes use four of them
GRAIN = 6  # +- grey levels of noise, so that the JPEG is not one flat upscaled picture
BAND_ROWS = 1000  # rows of the photo given grain at a time


def parse_args(argv=None):
    p = job_parser(__doc__)
    p.add_argument('--work_dir', required=True, help='the run, the photo and the outputs')
    p.add_argument('--height', type=positive_int, default=9000)
    p.add_argument('--width', type=positive_int, default=12000)
    p.add_argument('--tile', type=positive_int, default=512)
    p.add_argument('--tile_overlap', type=positive_int, help='default: predict.py\'s')
    return p.parse_args(argv)


def make_run(work_dir):
    """A one-step FCN-8s run of the CamVid config on demo records: its folder."""
    run_dir = os.path.join(work_dir, 'run')
    if os.path.isdir(os.path.join(run_dir, 'train')):
        return run_dir
    data_dir = write_demo_dataset(os.path.join(work_dir, 'data'), num_train=8, num_val=0)
    record = os.path.join(work_dir, 'train.record')
    convert_pairs(camvid_pairs(data_dir, 'train'), record, make_label_spec(NUM_CLASSES),
                  log=lambda *_: None)
    subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--config', CONFIG,
                    '--dataset_train', record, '--output_dir', run_dir, '--max_steps', '1',
                    '--crop_size', '96,128', '--batch_size', '2'], check=True, cwd=ROOT)
    return run_dir


def make_photo(path, height, width, seed=0):
    """A road scene of height x width as a JPEG at `path`: a demo scene a tenth of the size,
    upscaled, with grain added a band of rows at a time (never a float copy of it all)."""
    if os.path.isfile(path):
        return path
    rng = np.random.default_rng(seed)
    scene, _ = make_scene(np.random.RandomState(seed), max(height // 10, 32), max(width // 10, 32))
    photo = cv2.resize(scene[..., ::-1], (width, height), interpolation=cv2.INTER_LINEAR)
    for top in range(0, height, BAND_ROWS):
        band = photo[top:top + BAND_ROWS]
        grain = rng.integers(-GRAIN, GRAIN + 1, band.shape, dtype=np.int16)
        band[:] = np.clip(band + grain, 0, 255).astype(np.uint8)
    if not cv2.imwrite(path, photo):
        raise JobError('cannot write %s' % path)
    return path


def measure(command):
    """(wall seconds, peak resident bytes, output) of `command` under /usr/bin/time -v."""
    start = time.perf_counter()
    result = subprocess.run(['/usr/bin/time', '-v'] + command, capture_output=True, text=True,
                            cwd=ROOT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise JobError('%s failed (status %d):\n%s' % (' '.join(command), result.returncode,
                                                       result.stderr[-3000:]))
    peak_kb = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', result.stderr)[1])
    return seconds, peak_kb * 1024, result.stdout + result.stderr


def main(argv=None):
    args = parse_args(argv)

    def work():
        os.makedirs(args.work_dir, exist_ok=True)
        run_dir = make_run(args.work_dir)
        photo = make_photo(os.path.join(args.work_dir, 'photo_%dx%d.jpg'
                                        % (args.width, args.height)), args.height, args.width)
        out = os.path.join(args.work_dir, 'predictions')
        command = [sys.executable, os.path.join(ROOT, 'predict.py'), '--run_dir', run_dir,
                   '--input', photo, '--output_dir', out, '--tile', str(args.tile)]
        if args.tile_overlap is not None:
            command += ['--tile_overlap', str(args.tile_overlap)]
        print('Measuring: /usr/bin/time -v %s' % ' '.join(command), flush=True)
        seconds, peak, _ = measure(command)
        label = os.path.join(out, os.path.splitext(os.path.basename(photo))[0] + '_label.png')
        if header_size(label) != (args.height, args.width):
            raise JobError('%s is not %dx%d' % (label, args.width, args.height))
        print('predict.py --tile %d on a %dx%d JPEG (%s): wall %.0f s, peak RSS %.2f GB'
              % (args.tile, args.width, args.height, os.path.basename(CONFIG), seconds,
                 peak / 2 ** 30))

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
