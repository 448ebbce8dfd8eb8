"""Boundary F-score per class (Csurka, Larlus, Perronnin, "What is a good evaluation measure for
semantic segmentation?", BMVC 2013): how well the predicted class boundaries lie on the
annotated ones, which IoU, dominated by the insides of large regions, hardly sees.

    bf = BoundaryScore(num_classes, tolerance=2)
    bf.add(label, prediction)          # per image; void pixels are left out
    bf.result()                        # {'mean_boundary_f', 'per_class_boundary_f', ...}

Per image and class: the boundary pixels of the annotated and of the predicted region (pixels
of the region with a 4-neighbour outside it; the image's edge is no boundary), precision = the
share of predicted boundary pixels within `tolerance` pixels (Euclidean) of an annotated one,
recall the converse, F = 2PR / (P + R). A class present on one side only scores 0 in that
image; a class with no boundary on either side does not count there. A class's score is the
mean over the images where it counts, as in the paper; the mean boundary F is over classes.
Predicted boundary pixels on void pixels are left out (nothing can be said of them).

The tolerance is given in pixels at REFERENCE_DIAGONAL (360x480-like images) and scaled with
each image's diagonal, so that one setting means the same on CamVid and on Cityscapes.
"""
import cv2
import numpy as np

# The diagonal (pixels) at which a tolerance is given: 360x480's.
REFERENCE_DIAGONAL = 600.0
DEFAULT_TOLERANCE = 2.0
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def scaled_tolerance(tolerance, shape):
    """The tolerance in pixels for an image of `shape` (h, w): `tolerance` at 360x480."""
    return tolerance * float(np.hypot(shape[0], shape[1])) / REFERENCE_DIAGONAL


def boundary(mask):
    """bool [h, w]: the pixels of `mask` with a 4-neighbour outside it (the edge replicated)."""
    mask = np.ascontiguousarray(mask, np.uint8)
    eroded = cv2.erode(mask, _CROSS, borderType=cv2.BORDER_REPLICATE)
    return (mask > 0) & (eroded == 0)


def distance_to(pixels):
    """float32 [h, w]: each pixel's Euclidean distance to the nearest True of `pixels`
    (inf-like where there is none)."""
    if not pixels.any():
        return np.full(pixels.shape, np.inf, np.float32)
    return cv2.distanceTransform((~pixels).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def image_boundary_f(label, prediction, num_classes, tolerance):
    """float64 [num_classes]: each class's boundary F in one image (NaN where it does not
    count); `tolerance` in pixels (already scaled)."""
    label = np.asarray(label)
    prediction = np.asarray(prediction)
    labelled = (label >= 0) & (label < num_classes)
    scores = np.full(num_classes, np.nan)
    for c in range(num_classes):
        truth_edge = boundary(label == c)
        predicted_edge = boundary(prediction == c) & labelled
        truth_count, predicted_count = truth_edge.sum(), predicted_edge.sum()
        if not truth_count and not predicted_count:
            continue
        if not truth_count or not predicted_count:
            scores[c] = 0.0
            continue
        precision = (distance_to(truth_edge)[predicted_edge] <= tolerance).mean()
        recall = (distance_to(predicted_edge)[truth_edge] <= tolerance).mean()
        total = precision + recall
        scores[c] = 2 * precision * recall / total if total else 0.0
    return scores


class BoundaryScore:
    """Per-class boundary F over a stream of images (sums and counts only)."""

    def __init__(self, num_classes, tolerance=DEFAULT_TOLERANCE):
        self.num_classes = num_classes
        self.tolerance = tolerance
        self.sums = np.zeros(num_classes)
        self.counts = np.zeros(num_classes, np.int64)

    def add(self, label, prediction):
        """Adds one image (label and prediction int [h, w]); returns its per-class F."""
        scores = image_boundary_f(label, prediction, self.num_classes,
                                  scaled_tolerance(self.tolerance, np.shape(label)))
        counted = ~np.isnan(scores)
        self.sums[counted] += scores[counted]
        self.counts[counted] += 1
        return scores

    def result(self):
        """{'mean_boundary_f', 'per_class_boundary_f' (None where no image counted),
        'boundary_tolerance' (pixels at 360x480)}."""
        per_class = [float(s / n) if n else None for s, n in zip(self.sums, self.counts)]
        known = [v for v in per_class if v is not None]
        return {'mean_boundary_f': float(np.mean(known)) if known else float('nan'),
                'per_class_boundary_f': per_class, 'boundary_tolerance': self.tolerance}
