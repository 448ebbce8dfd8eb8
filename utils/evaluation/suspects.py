"""Annotations that look wrong: regions where the model is confident and disagrees with the
annotation, ranked for a person to check (the planted-error measurement is in the README).

    finder = SuspectFinder(num_classes, confidence=0.9, min_area=100)
    finder.add(record, filename, image, label, probabilities)   # per image
    finder.rows          # every region, for suspect_labels.csv
    finder.top()         # the best-ranked regions with their crops, for report.html

A suspect region is a connected component (8-connected, OpenCV's) of labelled pixels where the
top class probability is >= `confidence`, the predicted class differs from the annotated one,
and the pair (annotated class, predicted class) is the same, of at least `min_area` pixels. Its
score is its area x its mean confidence: large confident disagreements first. Either the
annotation is wrong there, or the model is confidently wrong; both are worth a look.
"""
import heapq

import cv2
import numpy as np

from utils.visualization import colorize

# Default confidence threshold (evaluate.py --suspect_confidence); chosen on the planted-error
# measurement of README "Know your data".
DEFAULT_CONFIDENCE = 0.9
DEFAULT_MIN_AREA = 100
# The crops kept for the report: this many regions, each with this share of context around its
# box, shrunk to at most CROP_SIDE pixels on its longer side.
NUM_SHOWN = 12
CONTEXT = 0.5
CROP_SIDE = 240
CSV_FIELDS = ('rank', 'record', 'image', 'annotated_class', 'predicted_class', 'area',
              'confidence', 'score', 'x', 'y', 'width', 'height')


def suspect_regions(label, probabilities, confidence, min_area):
    """[(area, mean confidence, annotated class, predicted class, (x, y, w, h))] of one image:
    label int [h, w], probabilities [h, w, n]."""
    num_classes = probabilities.shape[-1]
    label = np.asarray(label).astype(np.int64)
    top = probabilities.max(-1)
    prediction = probabilities.argmax(-1)
    suspect = ((label >= 0) & (label < num_classes) & (prediction != label)
               & (top >= confidence))
    pairs = np.where(suspect, label * num_classes + prediction, -1)
    regions = []
    for pair in np.unique(pairs[suspect]):
        count, components, stats, _ = cv2.connectedComponentsWithStats(
            (pairs == pair).astype(np.uint8), connectivity=8)
        sums = np.bincount(components.ravel(), top.ravel(), count)
        for k in range(1, count):  # 0 is the background
            x, y, w, h, area = (int(v) for v in stats[k])
            if area >= min_area:
                regions.append((area, float(sums[k] / area), int(pair // num_classes),
                                int(pair % num_classes), (x, y, w, h)))
    return regions


def crop_box(box, shape, context=CONTEXT):
    """(top, bottom, left, right) of the region's box grown by `context` of its size on each
    side, inside an image of `shape`."""
    x, y, w, h = box
    dx, dy = max(8, int(w * context)), max(8, int(h * context))
    return (max(0, y - dy), min(shape[0], y + h + dy), max(0, x - dx), min(shape[1], x + w + dx))


def region_crops(image, label, prediction, box, palette):
    """(image, annotation, prediction) RGB crops around `box`, the box drawn on each, at most
    CROP_SIDE pixels on the longer side."""
    top, bottom, left, right = crop_box(box, image.shape)
    crops = [image[top:bottom, left:right].copy(),
             colorize(label[top:bottom, left:right], palette),
             colorize(prediction[top:bottom, left:right], palette)]
    x, y, w, h = box
    scale = min(1.0, CROP_SIDE / max(bottom - top, right - left))
    out = []
    for crop in crops:
        if scale < 1.0:
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)),
                                     max(1, round(crop.shape[0] * scale))),
                              interpolation=cv2.INTER_AREA)
        corner = (round((x - left) * scale), round((y - top) * scale))
        far = (round((x - left + w - 1) * scale), round((y - top + h - 1) * scale))
        cv2.rectangle(crop, corner, far, (255, 255, 0), 2)
        out.append(crop)
    return tuple(out)


class SuspectFinder:
    """The suspect regions of a stream of images: all of them as rows, and the crops of the
    NUM_SHOWN best-ranked (the only pixels kept: memory does not grow with the dataset)."""

    def __init__(self, num_classes, palette, class_names, confidence=DEFAULT_CONFIDENCE,
                 min_area=DEFAULT_MIN_AREA, num_shown=NUM_SHOWN):
        self.num_classes = num_classes
        self.palette = palette
        self.class_names = class_names
        self.confidence = confidence
        self.min_area = min_area
        self.num_shown = num_shown
        self.rows = []
        self._shown = []  # heap of (score, order, row, crops): the smallest score on top

    def add(self, record, filename, image, label, probabilities):
        """Finds the regions of one image (uint8 RGB [h, w, 3], label [h, w], probabilities
        [h, w, n])."""
        prediction = None
        for area, confidence, annotated, predicted, box in suspect_regions(
                label, probabilities, self.confidence, self.min_area):
            row = {'record': record, 'image': filename,
                   'annotated_class': self.class_names[annotated],
                   'predicted_class': self.class_names[predicted], 'area': area,
                   'confidence': round(confidence, 4), 'score': round(area * confidence, 1),
                   'x': box[0], 'y': box[1], 'width': box[2], 'height': box[3]}
            self.rows.append(row)
            item = (row['score'], -len(self.rows), row)
            if self.num_shown and (len(self._shown) < self.num_shown
                                   or item[:2] > self._shown[0][:2]):
                if prediction is None:
                    prediction = probabilities.argmax(-1)
                crops = region_crops(image, label, prediction, box, self.palette)
                entry = item + (crops,)
                if len(self._shown) < self.num_shown:
                    heapq.heappush(self._shown, entry)
                else:
                    heapq.heapreplace(self._shown, entry)

    def ranked_rows(self):
        """Every region's row, best-ranked first, with its 'rank' (1-based)."""
        ordered = sorted(self.rows, key=lambda r: -r['score'])
        return [dict(r, rank=i + 1) for i, r in enumerate(ordered)]

    def top(self):
        """[(row, (image crop, annotation crop, prediction crop))], best-ranked first."""
        ranks = {id(r): i for i, r in enumerate(sorted(self.rows, key=lambda r: -r['score']))}
        shown = sorted(self._shown, key=lambda e: (-e[0], -e[1]))
        return [(dict(e[2], rank=ranks[id(e[2])] + 1), e[3]) for e in shown]
