"""Run monitoring: TensorBoard summaries, JSON-lines histories, the progress plot, and the
text of the log lines (where each file goes: utils/rundir.py)."""
import json
import os
import resource

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

from utils.errors import ConfigError
from utils.evaluation.metrics import percent
from utils.fileio import atomic_path, atomic_write_text


def format_scores(result):
    """'mIoU 12.3%, pixel accuracy 56.8% | with CRF: ...' of utils.evaluation scores."""
    text = 'mIoU %s, pixel accuracy %s' % (percent(result['mean_iou']),
                                           percent(result['pixel_accuracy']))
    if 'crf' in result:
        text += ' | with CRF: mIoU %s, pixel accuracy %s' % (
            percent(result['crf']['mean_iou']), percent(result['crf']['pixel_accuracy']))
    return text


def format_duration(seconds):
    """'H:MM:SS'."""
    seconds = int(max(seconds, 0))
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def format_size(size):
    """'123.4 MB' or '1.23 GB'."""
    return '%.1f MB' % (size / 2 ** 20) if size < 2 ** 30 else '%.2f GB' % (size / 2 ** 30)


def current_rss_mb():
    """Current resident memory of this process in MB (Linux), else the peak."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scalar_summary(values):
    """tf.Summary of {tag: float}."""
    return tf.Summary(value=[tf.Summary.Value(tag=tag, simple_value=float(v))
                             for tag, v in values.items() if v is not None and v == v])


def image_summary(tag, rgb):
    """tf.Summary holding one uint8 RGB image."""
    png = cv2.imencode('.png', np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()
    image = tf.Summary.Image(height=rgb.shape[0], width=rgb.shape[1], colorspace=3,
                             encoded_image_string=png)
    return tf.Summary(value=[tf.Summary.Value(tag=tag, image=image)])


def refuse_link(path):
    """A run's files are its own: a symbolic link in their place (to a file anywhere) is
    neither read nor written through."""
    if os.path.islink(path):
        raise ConfigError('%s is a symbolic link (to %s), not a file of this run: remove the '
                          'link and rerun' % (path, os.readlink(path)))


def append_jsonl(path, record):
    refuse_link(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, 'a') as f:
        f.write(json.dumps(record) + '\n')


def read_jsonl(path):
    """Records of a JSON-lines file; a torn last line (killed writer) is ignored."""
    if not os.path.lexists(path):
        return []
    refuse_link(path)
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def keep_steps_up_to(path, step):
    """Rewrites a JSON-lines history without its records past `step` (those of steps that a
    killed run logged after its last checkpoint, which the resumed run logs again) and
    without a torn last line; returns how many records were dropped."""
    records = read_jsonl(path)
    kept = [r for r in records if r.get('step', 0) <= step]
    if len(kept) != len(records) or _ends_torn(path):
        atomic_write_text(path, ''.join(json.dumps(r) + '\n' for r in kept))
    return len(records) - len(kept)


def _ends_torn(path):
    """True when a file's last line lacks its newline (its writer was killed)."""
    if not os.path.exists(path) or not os.path.getsize(path):
        return False
    with open(path, 'rb') as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b'\n'


LOSS_SMOOTHING = 0.9  # weight of the past in the plotted moving average, as TensorBoard's slider
SMOOTHING_SPAN = 10  # ... lowered for short histories, so that about this many points are averaged


def smoothed(values, weight=None):
    """TensorBoard's smoothing: an exponential moving average, debiased at the start. The
    default weight is LOSS_SMOOTHING, less for short histories (which it would make lag)."""
    if weight is None:
        weight = min(LOSS_SMOOTHING, max(0.0, 1 - SMOOTHING_SPAN / max(len(values), 1)))
    out, average = [], 0.0
    for count, value in enumerate(values, 1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight ** count))
    return out


def plot_progress(path, history, validations):
    """Writes a PNG: training loss, raw and smoothed (left axis), and validation mIoU (right
    axis) over steps, the legend below the plot so that it hides no point."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, loss_axis = plt.subplots(figsize=(8, 4.8))
    if history:
        steps, losses = [h['step'] for h in history], [h['loss'] for h in history]
        loss_axis.plot(steps, losses, color='tab:blue', lw=0.8, alpha=0.3,
                       label='training loss')
        loss_axis.plot(steps, smoothed(losses), color='tab:blue', lw=1.8,
                       label='training loss, smoothed')
    loss_axis.set_xlabel('step')
    loss_axis.set_ylabel('training loss', color='tab:blue')
    iou_axis = loss_axis.twinx()
    if validations:
        steps = [v['step'] for v in validations]
        iou_axis.plot(steps, [v['mean_iou'] for v in validations], 'o-', color='tab:red',
                      label='validation mIoU')
        crf = [v['crf']['mean_iou'] for v in validations if 'crf' in v]
        if len(crf) == len(steps):
            iou_axis.plot(steps, crf, 's--', color='tab:orange', label='validation mIoU, CRF')
    iou_axis.set_ylabel('validation mIoU', color='tab:red')
    iou_axis.set_ylim(0, 1)
    handles = loss_axis.get_legend_handles_labels()[0] + iou_axis.get_legend_handles_labels()[0]
    if handles:
        fig.legend(handles, [h.get_label() for h in handles], loc='lower center',
                   ncol=len(handles), frameon=False, fontsize=9)
    loss_axis.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_path(path) as tmp_path:
        fig.savefig(tmp_path, format='png', dpi=90)
    plt.close(fig)
