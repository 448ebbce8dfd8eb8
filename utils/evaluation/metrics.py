"""Segmentation scores as in the FCN reference `score.py`: one confusion matrix over a dataset.

hist[gt, pred] counts pixels; ground truth outside [0, n) (void) is excluded.
"""
import numpy as np


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
