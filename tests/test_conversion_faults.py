"""The converter's bad inputs: images above the pixel limit, files that do not pair one to one,
an earlier output in the way, an output path that is a folder, and SIGTERM mid-conversion.
Each ends in one line naming the file, flag or value, and leaves nothing behind."""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, run_script
from utils.data.conversion import convert_pairs, make_label_spec
from utils.data.records import REPORT_SUFFIX
from utils.data.layouts import camvid_pairs
from utils.data.pixels import MAX_IMAGE_PIXELS
from utils.data.records import count_records
from utils.errors import OutputError

NUM_CLASSES = 3


def write_pair(root, name, size=(20, 30), label_size=None, image_ext='.png', label=True):
    """One CamVid-layout pair under root/train(annot); returns the image path."""
    for folder in ('train', 'trainannot'):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    rng = np.random.RandomState(len(name))
    image_path = os.path.join(root, 'train', name + image_ext)
    cv2.imwrite(image_path, rng.randint(0, 256, size + (3,), dtype=np.uint8))
    if label:
        cv2.imwrite(os.path.join(root, 'trainannot', name + '.png'),
                    rng.randint(0, NUM_CLASSES, label_size or size).astype(np.uint8))
    return image_path


def convert(root, out, max_image_pixels=MAX_IMAGE_PIXELS, **kwargs):
    """convert_pairs over root's train split; returns (report, log lines)."""
    messages = []
    spec = make_label_spec(NUM_CLASSES, max_image_pixels=max_image_pixels)
    report = convert_pairs(camvid_pairs(root, 'train'), out, spec, log=messages.append, **kwargs)
    return report, messages


def converter_args(root, out, *extra):
    return ('--dataset_format', 'camvid', '--data_dir', root, '--split', 'train',
            '--output_path', out, '--num_classes', str(NUM_CLASSES)) + extra


def error_lines(log):
    return [line for line in log.splitlines() if line.startswith('error:')]


def leftovers(folder):
    """Temporary or part files (the writers' `.NAME.*.tmp`) left in `folder`."""
    return [name for name in os.listdir(folder) if name.endswith('.tmp')]


# 1. The pixel limit, read from the headers before any decoding.

def test_images_and_labels_above_the_pixel_limit_are_skipped_before_decoding(tmp_path):
    root = str(tmp_path / 'data')
    write_pair(root, 'small')  # 20x30 = 600 pixels
    big = write_pair(root, 'big', size=(40, 40))  # 1600 pixels
    data = bytearray(open(big, 'rb').read())
    start = data.index(b'IDAT') + 4
    data[start:start + 200] = bytes(200)  # header intact, pixels undecodable
    with open(big, 'wb') as f:
        f.write(data)
    write_pair(root, 'biglabel', label_size=(40, 40))
    out = str(tmp_path / 'out.record')
    report, messages = convert(root, out, max_image_pixels=1000)
    assert report['pairs_written'] == 1 and report['pairs_skipped'] == 2
    reasons = {os.path.basename(s['image']): s['reason'] for s in report['skipped']}
    # Decoding first would have said 'cannot decode': the header was read before.
    assert reasons['big.png'].startswith('image %s is 40x40' % big)
    assert '--max_image_pixels 1000' in reasons['big.png']
    assert reasons['biglabel.png'].startswith('label %s is 40x40' % os.path.join(
        root, 'trainannot', 'biglabel.png'))
    assert sum(m.startswith('skipped: ') for m in messages) == 2
    assert json.load(open(out + REPORT_SUFFIX))['skipped'] == report['skipped']
    report, _ = convert(root, str(tmp_path / 'unlimited.record'), max_image_pixels=0)
    reasons = [s['reason'] for s in report['skipped']]  # 0: no limit, the decoders speak
    assert 'cannot decode image %s' % big in reasons[0] and 'size mismatch' in reasons[1]


def test_the_default_limit_skips_a_15000_pixel_square_png(tmp_path):
    root = str(tmp_path / 'data')
    write_pair(root, 'small')
    write_pair(root, 'huge')
    huge = os.path.join(root, 'train', 'huge.png')
    # 1 bit per pixel: 28 MB in memory, a few tens of KB as PNG, 675 MB once decoded as RGB.
    Image.new('1', (15000, 15000)).save(huge)
    assert os.path.getsize(huge) < 1 << 20
    report, _ = convert(root, str(tmp_path / 'out.record'))
    assert report['pairs_written'] == 1
    [skipped] = report['skipped']
    assert skipped['image'] == huge
    assert skipped['reason'].startswith('image %s is 15000x15000 = 225 million pixels' % huge)


def test_the_pixel_flag_reaches_the_converter_and_strict_fails(tmp_path):
    root = str(tmp_path / 'data')
    write_pair(root, 'small')
    big = write_pair(root, 'big', size=(40, 40))
    out = str(tmp_path / 'out.record')
    code, log = run_script('convert_fcn_dataset.py',
                           *converter_args(root, out, '--max_image_pixels', '1000'))
    assert code == 0, log
    assert 'skipped: image %s is 40x40' % big in log and 'skipped 1' in log
    code, log = run_script('convert_fcn_dataset.py', *converter_args(
        root, out, '--max_image_pixels', '1000', '--strict', '--overwrite'))
    assert code == 1 and '(--strict)' in error_lines(log)[0] and 'Traceback' not in log
    code, log = run_script('convert_fcn_dataset.py',
                           *converter_args(root, out, '--max_image_pixels', '-1'))
    assert code == 2 and "'-1' is not an integer >= 0" in log


# 2. Files that do not pair one to one by stem.

def test_a_label_without_image_and_two_images_of_one_stem_are_reported(tmp_path):
    root = str(tmp_path / 'data')
    write_pair(root, 'a')
    write_pair(root, 'x')
    x_jpg = write_pair(root, 'x', image_ext='.jpg', label=False)  # x.png and x.jpg
    cv2.imwrite(os.path.join(root, 'trainannot', 'y.png'), np.zeros((20, 30), np.uint8))
    write_pair(root, 'z')
    z_jpg = os.path.join(root, 'trainannot', 'z.jpg')
    cv2.imwrite(z_jpg, np.zeros((20, 30), np.uint8))  # z.png and z.jpg labels
    pairs = camvid_pairs(root, 'train')
    assert [os.path.basename(p[0]) if isinstance(p[0], str) else p[0] for p in pairs] == [
        'a.png', (x_jpg, os.path.join(root, 'train', 'x.png')), 'z.png', None]
    report, messages = convert(root, str(tmp_path / 'out.record'))
    assert report['pairs_found'] == 4 and report['pairs_written'] == 1
    assert report['pairs_skipped'] == 3
    reasons = [s['reason'] for s in report['skipped']]
    assert reasons[0].startswith('images %s and %s share the stem x, so it is unclear which one '
                                 'pairs with label %s' % (x_jpg, os.path.join(
                                     root, 'train', 'x.png'), os.path.join(
                                     root, 'trainannot', 'x.png')))
    assert reasons[1].startswith('labels %s and %s share the stem z' % (
        os.path.join(root, 'trainannot', 'z.jpg'), os.path.join(root, 'trainannot', 'z.png')))
    assert reasons[2] == ('label %s: no image has the stem y; add the image or remove the '
                          'label' % os.path.join(root, 'trainannot', 'y.png'))
    assert ['skipped: ' + r for r in reasons] == messages
    saved = json.load(open(str(tmp_path / 'out.record') + REPORT_SUFFIX))
    assert saved['skipped'][2]['image'] is None and len(saved['skipped'][0]['image']) == 2


# 3. An earlier conversion at the output path.

def test_an_earlier_output_is_refused_in_one_line_then_replaced_with_overwrite(tmp_path):
    root = str(tmp_path / 'data')
    write_pair(root, 'a')
    out = str(tmp_path / 'out.record')
    code, log = run_script('convert_fcn_dataset.py', *converter_args(root, out))
    assert code == 0, log
    before = open(out, 'rb').read(), open(out + REPORT_SUFFIX).read()
    write_pair(root, 'b')
    code, log = run_script('convert_fcn_dataset.py', *converter_args(root, out))
    assert code == 1 and 'Traceback' not in log
    assert error_lines(log) == [
        'error: --output_path %s exists from an earlier conversion (out.record, '
        'out.record.report.json, out.record.dataset.html); pass --overwrite to replace it, '
        'or choose another --output_path' % out]
    assert (open(out, 'rb').read(), open(out + REPORT_SUFFIX).read()) == before
    code, log = run_script('convert_fcn_dataset.py', *converter_args(root, out, '--overwrite'))
    assert code == 0, log
    assert 'replacing the earlier conversion at %s' % out in log
    assert count_records([out]) == 2 and not leftovers(str(tmp_path))


def test_overwrite_refusal_covers_shards_and_report_and_replaces_other_shard_counts(tmp_path):
    root = str(tmp_path / 'data')
    for name in 'abc':
        write_pair(root, name)
    out = str(tmp_path / 'out.record')
    report, _ = convert(root, out, num_shards=3)
    shards = report['output_paths']
    with pytest.raises(OutputError, match='out.record-00000-of-00003, out.record-00001-of-00003, '
                                          'out.record-00002-of-00003 and 2 more'):
        convert(root, out, overwrite=False)
    report, messages = convert(root, out)  # the library's default replaces
    assert report['output_paths'] == [out] and count_records([out]) == 3
    assert not any(os.path.exists(p) for p in shards)
    assert messages[-1] == 'removed %s of the earlier conversion' % ', '.join(shards)
    os.remove(out)  # only the report is left
    with pytest.raises(OutputError, match='out.record.report.json'):
        convert(root, out, overwrite=False)


# 5. An output path that is a folder.

def test_an_output_path_that_is_a_folder_is_one_line(tmp_path):
    root = str(tmp_path / 'data')
    write_pair(root, 'a')
    folder = str(tmp_path / 'records')
    os.makedirs(folder)
    code, log = run_script('convert_fcn_dataset.py', *converter_args(root, folder, '--overwrite'))
    assert code == 1 and 'Traceback' not in log
    assert error_lines(log) == ['error: --output_path %s is a folder; give the path of the '
                                'record file to write, e.g. %s/train.record' % (folder, folder)]
    assert os.listdir(folder) == [] and not leftovers(str(tmp_path))
    with pytest.raises(OutputError, match='is a folder'):
        convert(root, str(tmp_path / 'not_yet') + os.sep)


# 4. SIGTERM mid-conversion.

@pytest.fixture(scope='module')
def many_pairs(tmp_path_factory):
    """A CamVid-layout split of 1500 pairs (hard links to one 96x128 pair): long enough a
    conversion (over a second) to be stopped in the middle."""
    root = str(tmp_path_factory.mktemp('many') / 'data')
    first = write_pair(root, 'p0000', size=(96, 128))
    label = os.path.join(root, 'trainannot', 'p0000.png')
    for i in range(1, 1500):
        os.link(first, os.path.join(root, 'train', 'p%04d.png' % i))
        os.link(label, os.path.join(root, 'trainannot', 'p%04d.png' % i))
    return root


def part_files(folder):
    """The part files a conversion into `folder` is writing (in its `.NAME.parts-*.tmp`)."""
    names = []
    for tmp in leftovers(folder):
        try:
            names += os.listdir(os.path.join(folder, tmp))
        except OSError:  # a temporary file, or a parts folder removed meanwhile
            continue
    return names


def processes_naming(text):
    """Pids of the processes whose command line holds `text` (the converter's workers)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                if text.encode() in f.read():
                    pids.append(pid)
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='needs /proc to see the workers')
@pytest.mark.parametrize('num_workers', ['1', '2'])
def test_sigterm_mid_conversion_removes_its_parts_and_keeps_the_earlier_output(
        tmp_path, many_pairs, num_workers):
    out = str(tmp_path / 'train.record')
    write_pair(str(tmp_path / 'small'), 'a')
    convert(str(tmp_path / 'small'), out)
    before = open(out, 'rb').read(), open(out + REPORT_SUFFIX).read()
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'convert_fcn_dataset.py')] + list(converter_args(
            many_pairs, out, '--overwrite', '--num_workers', num_workers)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.time() + 120
        while not part_files(str(tmp_path)):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a no-op once it has ended
    assert proc.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert stderr.strip().splitlines()[-1] == (
        'interrupted (SIGTERM): the conversion to %s stopped and its temporary files were '
        'removed' % out)
    assert 'Traceback' not in stderr and 'Wrote' not in stdout
    assert not leftovers(str(tmp_path))
    assert (open(out, 'rb').read(), open(out + REPORT_SUFFIX).read()) == before
    assert not processes_naming(out)  # no worker outlives the run


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='needs /proc to see the workers')
def test_a_worker_killed_mid_conversion_ends_it_in_one_line(tmp_path, many_pairs):
    """As the out-of-memory killer would: SIGKILL to one worker. The parent notices, removes
    its parts and exits with one line (a Pool waited for the lost chunk for ever)."""
    out = str(tmp_path / 'train.record')
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'convert_fcn_dataset.py')] + list(converter_args(
            many_pairs, out, '--num_workers', '2')),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.time() + 120
        while not part_files(str(tmp_path)):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.005)
        workers = [pid for pid in processes_naming(out) if int(pid) != proc.pid]
        assert workers
        os.kill(int(workers[0]), signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stdout + stderr
    assert stderr.strip().splitlines()[-1].startswith(
        'error: a conversion worker process died before its part was written'), stderr
    assert 'Traceback' not in stderr
    assert not leftovers(str(tmp_path)) and not os.path.exists(out)
    assert not processes_naming(out)
