import numpy as np

from utils.evaluation.metrics import confusion_matrix, scores


def reference_scores(labels, preds, n):
    """Loop-based, independent of utils.evaluation.metrics."""
    hist = np.zeros((n, n))
    for gt, pr in zip(labels.ravel(), preds.ravel()):
        if 0 <= gt < n:
            hist[gt, pr] += 1
    ious, accs = [], []
    for c in range(n):
        tp = hist[c, c]
        union = hist[c, :].sum() + hist[:, c].sum() - tp
        if union > 0:
            ious.append(tp / union)
        if hist[c, :].sum() > 0:
            accs.append(tp / hist[c, :].sum())
    freq = hist.sum(1) / hist.sum()
    fw = sum(freq[c] * hist[c, c] / (hist[c, :].sum() + hist[:, c].sum() - hist[c, c])
             for c in range(n) if freq[c] > 0)
    return hist, np.trace(hist) / hist.sum(), np.mean(accs), np.mean(ious), fw


def test_scores_match_reference_with_ignore():
    rng = np.random.RandomState(3)
    n = 5
    labels = rng.randint(0, n, (40, 50))
    labels[rng.rand(40, 50) < 0.2] = 255
    preds = np.where(rng.rand(40, 50) < 0.6, labels % n, rng.randint(0, n, (40, 50)))
    hist = confusion_matrix(labels, preds, n)
    ref_hist, pa, ma, miou, fw = reference_scores(labels, preds, n)
    np.testing.assert_array_equal(hist, ref_hist)
    s = scores(hist)
    assert np.isclose(s['pixel_accuracy'], pa)
    assert np.isclose(s['mean_accuracy'], ma)
    assert np.isclose(s['mean_iou'], miou)
    assert np.isclose(s['fw_iou'], fw)
    assert hist.sum() == (labels != 255).sum()


def test_absent_class_is_left_out_of_the_mean():
    labels = np.array([0, 0, 1, 1])
    s = scores(confusion_matrix(labels, labels, 3))
    assert s['mean_iou'] == 1.0
    assert s['per_class_iou'][2] is None
