"""Calibration of the per-pixel probabilities: the expected calibration error (ECE, Guo et al.,
"On calibration of modern neural networks", ICML 2017) and its reliability diagram.

    calibration = Calibration()
    calibration.add(label, probabilities)     # per image; void pixels are left out
    calibration.result()   # {'ece', 'bins': [{'lower', 'upper', 'count', 'confidence', ...}]}

Each labelled pixel's confidence is its top class probability; pixels are binned by confidence
into NUM_BINS equal bins over [0, 1], and ECE = sum over bins of (bin's share of pixels) x
|accuracy in the bin - mean confidence in the bin|. 0 means that a pixel predicted with 80%
confidence is right 80% of the time; a user who thresholds probabilities needs that.
"""
import os

import numpy as np

from utils.fileio import atomic_path

NUM_BINS = 15  # Guo et al.'s
RELIABILITY_FILENAME = 'reliability.png'


class Calibration:
    """Per-bin pixel counts, summed confidences and correct counts over a stream of images."""

    def __init__(self, num_bins=NUM_BINS):
        self.num_bins = num_bins
        self.counts = np.zeros(num_bins, np.int64)
        self.confidence = np.zeros(num_bins)
        self.correct = np.zeros(num_bins, np.int64)

    def add(self, label, probabilities):
        """label int [h, w] (values outside [0, n) are left out), probabilities [h, w, n]."""
        label = np.asarray(label).ravel()
        probabilities = np.asarray(probabilities).reshape(label.size, -1)
        keep = (label >= 0) & (label < probabilities.shape[1])
        probabilities, label = probabilities[keep], label[keep]
        confidence = probabilities.max(1).astype(np.float64)
        correct = probabilities.argmax(1) == label
        bins = np.clip((confidence * self.num_bins).astype(np.int64), 0, self.num_bins - 1)
        self.counts += np.bincount(bins, minlength=self.num_bins)
        self.confidence += np.bincount(bins, confidence, self.num_bins)
        self.correct += np.bincount(bins, correct, self.num_bins).astype(np.int64)

    def result(self):
        """{'ece', 'num_pixels', 'bins': [{'lower', 'upper', 'count', 'confidence',
        'accuracy'}]} (confidence and accuracy None for an empty bin)."""
        total = int(self.counts.sum())
        bins, ece = [], 0.0
        for b in range(self.num_bins):
            n = int(self.counts[b])
            confidence = self.confidence[b] / n if n else None
            accuracy = self.correct[b] / n if n else None
            if n:
                ece += n / total * abs(accuracy - confidence)
            bins.append({'lower': b / self.num_bins, 'upper': (b + 1) / self.num_bins,
                         'count': n, 'confidence': confidence, 'accuracy': accuracy})
        return {'ece': float(ece) if total else float('nan'), 'num_pixels': total,
                'bins': bins}


def write_reliability_png(output_dir, calibration):
    """RELIABILITY_FILENAME: accuracy per confidence bin against the diagonal, and the share of
    pixels per bin; returns the file name (relative to `output_dir`)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    bins = calibration['bins']
    lower = np.array([b['lower'] for b in bins])
    width = bins[0]['upper'] - bins[0]['lower']
    accuracy = np.array([b['accuracy'] if b['count'] else 0.0 for b in bins])
    confidence = np.array([b['confidence'] if b['count'] else 0.0 for b in bins])
    share = np.array([b['count'] for b in bins]) / max(calibration['num_pixels'], 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                      gridspec_kw={'height_ratios': [3, 1]})
    top.bar(lower, accuracy, width, align='edge', color='#3b6fb6', edgecolor='white',
            label='accuracy of the bin')
    top.bar(lower, confidence - accuracy, width, bottom=accuracy, align='edge',
            color='#e39b2d', alpha=0.45, edgecolor='white', label='gap to its confidence')
    top.plot([0, 1], [0, 1], 'k--', lw=1, label='perfectly calibrated')
    top.set_ylabel('pixel accuracy')
    top.set_ylim(0, 1)
    top.set_title('Reliability: ECE %.2f%% over %d pixels' % (100 * calibration['ece'],
                                                               calibration['num_pixels']))
    top.legend(loc='upper left', fontsize=8)
    bottom.bar(lower, share, width, align='edge', color='#888', edgecolor='white')
    bottom.set_xlabel('confidence (top class probability)')
    bottom.set_ylabel('share of pixels')
    bottom.set_xlim(0, 1)
    fig.tight_layout()
    with atomic_path(os.path.join(output_dir, RELIABILITY_FILENAME)) as tmp_path:
        fig.savefig(tmp_path, format='png', dpi=100)
    plt.close(fig)
    return RELIABILITY_FILENAME
