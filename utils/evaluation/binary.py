"""Two-class (road / not road) scores as the KITTI road benchmark and KittiSeg report them:
MaxF, average precision, and precision, recall, FPR and FNR at the MaxF threshold.

The positive class's probability is accumulated per pixel as a histogram over NUM_BINS
thresholds, separately for positive and negative ground truth, so memory does not grow with
the dataset:

    curve = BinaryCurve(positive_class=1)
    curve.add(label, probabilities[..., 1])    # per image; void pixels are left out
    curve.result()  # {'max_f', 'average_precision', 'threshold', 'precision', 'recall', ...}

Scores are computed in image space (the camera's perspective view), as KittiSeg's evaluation
does; the official KITTI road figures are computed in the bird's-eye view, after a
perspective transform of the road plane, so they are not the same numbers.
"""
import numpy as np

from utils.errors import ConfigError

# Thresholds 0, 1/1000, ..., 999/1000: a pixel is called positive when its probability is
# >= the threshold. KittiSeg uses 256 (k/255); a finer grid moves MaxF by < 1e-3.
NUM_BINS = 1000


class BinaryCurve:
    """Histograms of the positive class's probability for positive and negative pixels."""

    def __init__(self, positive_class, num_classes=2, num_bins=NUM_BINS):
        self.positive_class = positive_class
        self.num_classes = num_classes
        self.num_bins = num_bins
        self.positives = np.zeros(num_bins, np.int64)
        self.negatives = np.zeros(num_bins, np.int64)

    def add(self, label, probability):
        """label int [h, w] (void and values >= num_classes are left out), probability of the
        positive class float [h, w] in [0, 1]."""
        label = np.asarray(label).ravel()
        bins = np.clip((np.asarray(probability, np.float64).ravel() * self.num_bins)
                       .astype(np.int64), 0, self.num_bins - 1)
        valid = (label >= 0) & (label < self.num_classes)
        positive = valid & (label == self.positive_class)
        self.positives += np.bincount(bins[positive], minlength=self.num_bins)
        self.negatives += np.bincount(bins[valid & ~positive], minlength=self.num_bins)

    def result(self):
        """{'max_f', 'average_precision', 'threshold' (of MaxF), 'precision', 'recall', 'fpr',
        'fnr' (at that threshold), 'positive_class', 'positive_pixels', 'negative_pixels'};
        scores are None when there is no positive pixel."""
        # Counts at threshold k (positive when bin >= k): cumulative sums from the top.
        tp = np.cumsum(self.positives[::-1])[::-1].astype(np.float64)
        fp = np.cumsum(self.negatives[::-1])[::-1].astype(np.float64)
        num_pos, num_neg = float(self.positives.sum()), float(self.negatives.sum())
        summary = {'positive_class': self.positive_class, 'positive_pixels': int(num_pos),
                   'negative_pixels': int(num_neg)}
        if not num_pos:
            return dict(summary, max_f=None, average_precision=None, threshold=None,
                        precision=None, recall=None, fpr=None, fnr=None)
        recall = tp / num_pos
        with np.errstate(divide='ignore', invalid='ignore'):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
            f_measure = np.where(precision + recall > 0,
                                 2 * precision * recall / (precision + recall), 0.0)
        best = int(np.argmax(f_measure))
        return dict(summary, max_f=float(f_measure[best]),
                    average_precision=average_precision(precision, recall),
                    threshold=best / self.num_bins, precision=float(precision[best]),
                    recall=float(recall[best]),
                    fpr=float(fp[best] / num_neg) if num_neg else None,
                    fnr=float(1 - recall[best]))


def average_precision(precision, recall):
    """Area under the precision-recall curve as the sum over thresholds, highest first, of
    (recall gained) x precision (scikit-learn's average_precision_score, not interpolated).
    `precision`, `recall`: per threshold, lowest threshold first."""
    recall_gain = -np.diff(np.append(recall, 0.0))  # recall(k) - recall(k + 1)
    return float((recall_gain * precision).sum())


def positive_class_of(config, choice=None):
    """The positive class index: `choice` (a class name or index), else for a two-class config
    the class named 'road' (KITTI road) or class 1; None for other configs (no binary
    scores). Raises ConfigError naming the choice when it is no class."""
    names = list(config.class_names)
    if choice is not None:
        if str(choice) in names:
            return names.index(str(choice))
        if str(choice).isdigit() and int(choice) < config.num_classes:
            return int(choice)
        raise ConfigError('--positive_class %s is no class of the run (%s)'
                         % (choice, ', '.join(names) or '0..%d' % (config.num_classes - 1)))
    if config.num_classes != 2:
        return None
    return names.index('road') if 'road' in names else 1
