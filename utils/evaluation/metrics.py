"""Segmentation scores as in the FCN reference `score.py`: one confusion matrix over a dataset.

hist[gt, pred] counts pixels; ground truth outside [0, n) (void) is excluded.
"""
import numpy as np


def points(fraction):
    """'61.2' for 0.612: a score in percentage points, as every page, table and console line
    gives scores; '-' for none or NaN."""
    return '-' if fraction is None or fraction != fraction else '%.1f' % (100 * fraction)


def percent(fraction):
    """'61.2%' for 0.612 ('-' for none or NaN)."""
    text = points(fraction)
    return text if text == '-' else text + '%'


def confusion_matrix(labels, predictions, num_classes):
    """int64 [num_classes, num_classes], rows = ground truth, columns = prediction."""
    labels = np.asarray(labels).ravel().astype(np.int64)
    predictions = np.asarray(predictions).ravel().astype(np.int64)
    keep = (labels >= 0) & (labels < num_classes)
    return np.bincount(num_classes * labels[keep] + predictions[keep],
                       minlength=num_classes ** 2).reshape(num_classes, num_classes)


def scores(hist):
    """Pixel accuracy, mean class accuracy, per-class IoU, mean IoU, frequency-weighted IoU.

    Classes absent from both ground truth and prediction have IoU NaN and are left out of means.
    """
    hist = np.asarray(hist, np.float64)
    diag = np.diag(hist)
    gt_count = hist.sum(axis=1)
    pred_count = hist.sum(axis=0)
    total = hist.sum()
    with np.errstate(divide='ignore', invalid='ignore'):
        class_accuracy = diag / gt_count
        iou = diag / (gt_count + pred_count - diag)
    freq = gt_count / total if total else np.zeros_like(gt_count)
    seen = freq > 0
    return {
        'pixel_accuracy': float(diag.sum() / total) if total else float('nan'),
        'mean_accuracy': _nanmean(class_accuracy),
        'mean_iou': _nanmean(iou),
        'fw_iou': float((freq[seen] * iou[seen]).sum()),
        'per_class_iou': [None if np.isnan(v) else float(v) for v in iou],
    }


def _nanmean(values):
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float('nan')


def majority_baseline(hist):
    """(class, mIoU) of predicting the ground truth's most frequent class everywhere, scored
    like a model (`scores`): the mIoU a network that learned nothing but the class frequencies
    gets. (None, 0.0) when no pixel is labelled."""
    hist = np.asarray(hist)
    gt_count = hist.sum(axis=1)
    if not gt_count.sum():
        return None, 0.0
    majority = int(np.argmax(gt_count))
    everywhere = np.zeros_like(hist)
    everywhere[:, majority] = gt_count
    return majority, float(scores(everywhere)['mean_iou'])
