"""Annotations that look wrong: regions where the model is confident and disagrees with the
annotation, ranked for a person to check (the planted-error measurement is in the README).

    finder = SuspectFinder(num_classes, palette, class_names, confidence=0.7, min_area=100)
    finder.add(record, filename, image, label, probabilities)   # per image
    finder.rows          # every region, for suspect_labels.csv
    finder.top()         # the best-ranked regions with their crops, for report.html

A suspect region is a connected component (8-connected, OpenCV's) of labelled pixels where the
predicted class differs from the annotated one, the pair (annotated class, predicted class)
being the same over it, of at least `min_area` pixels and a mean top-class probability of at
least `confidence` (the mean, not each pixel: a threshold per pixel would cut a wrongly
annotated object into its confident core, and rank it by that core). Its score is its area x
its mean confidence x its share of the model's own region of the predicted class (the
connected region of that class in the prediction that holds it): a whole object the model sees
and the annotation calls something else (a car annotated as road) ranks above a fringe where
two large regions meet (the edge of a tree predicted over a fence), which is how a wrong
annotation differs from a model's own error. Either the annotation is wrong there, or the
model is confidently wrong; both are worth a look.
"""
import collections
import heapq

import cv2
import numpy as np

from utils.visualization import colorize

# Default threshold of a region's mean confidence (evaluate.py --suspect_confidence), chosen on
# benchmarks/planted_errors.py (README "Know your data"): five errors planted in 21 CamVid val
# images, the MobileNet FCN of configs/camvid_mobilenet_fcn.yaml (val mIoU 59.9) ranks 4 of
# them in its top 10 at 0.5 and 0.7, 3 at 0.8 and 0.9 (a bicyclist annotated as road is
# predicted at a mean 0.73), none at 0.95; 0.7 keeps the list shorter than 0.5 (240 regions
# against 649). A weaker run (FCN-8s, 400 steps at half size, val mIoU 49.2) finds 3 of 5 at
# 0.5-0.8 and 1 at 0.9.
DEFAULT_CONFIDENCE = 0.7
DEFAULT_MIN_AREA = 100
# The crops kept for the report: this many regions, each with this share of context around its
# box, shrunk to at most CROP_SIDE pixels on its longer side.
NUM_SHOWN = 12
CONTEXT = 0.5
CROP_SIDE = 240
CSV_FIELDS = ('rank', 'record', 'image', 'annotated_class', 'predicted_class', 'area',
              'confidence', 'share', 'score', 'x', 'y', 'width', 'height')
# One suspect region: its pixel count, mean top probability, annotated and predicted class
# ids, box (x, y, width, height), and its share of the predicted region that holds it.
Region = collections.namedtuple('Region', 'area confidence annotated predicted box share')


def suspect_regions(label, probabilities, confidence, min_area):
    """[Region] of one image: label int [h, w], probabilities [h, w, n]."""
    num_classes = probabilities.shape[-1]
    label = np.asarray(label).astype(np.int64)
    top = probabilities.max(-1)
    prediction = probabilities.argmax(-1)
    suspect = (label >= 0) & (label < num_classes) & (prediction != label)
    pairs = np.where(suspect, label * num_classes + prediction, -1)
    regions = []
    predicted_regions = {}  # class -> (its connected regions in the prediction, their areas)
    for pair in np.unique(pairs[suspect]):
        annotated, predicted = int(pair // num_classes), int(pair % num_classes)
        mask = pairs == pair
        count, components, stats, _ = cv2.connectedComponentsWithStats(
            mask.astype(np.uint8), connectivity=8)
        if predicted not in predicted_regions:
            _, whole, whole_stats, _ = cv2.connectedComponentsWithStats(
                (prediction == predicted).astype(np.uint8), connectivity=8)
            predicted_regions[predicted] = whole, whole_stats[:, cv2.CC_STAT_AREA]
        whole, whole_areas = predicted_regions[predicted]
        # Each component lies inside one predicted region (a connected subset of that class).
        holder = np.zeros(count, np.int64)
        holder[components[mask]] = whole[mask]
        sums = np.bincount(components.ravel(), top.ravel(), count)
        for k in range(1, count):  # 0 is the background
            x, y, w, h, area = (int(v) for v in stats[k])
            if area >= min_area and sums[k] / area >= confidence:
                regions.append(Region(area, float(sums[k] / area), annotated, predicted,
                                      (x, y, w, h), area / int(whole_areas[holder[k]])))
    return regions


def region_score(region):
    """The rank of a suspect region: area x mean confidence x share of its predicted region."""
    return region.area * region.confidence * region.share


def crop_box(box, shape, context=CONTEXT):
    """(top, bottom, left, right) of the region's box grown by `context` of its size on each
    side, inside an image of `shape`."""
    x, y, w, h = box
    dx, dy = max(8, int(w * context)), max(8, int(h * context))
    return (max(0, y - dy), min(shape[0], y + h + dy), max(0, x - dx), min(shape[1], x + w + dx))


def region_crops(image, label, prediction, box, palette):
    """(image, annotation, prediction) RGB crops around `box`, the box drawn on each, resized
    to CROP_SIDE pixels on the longer side (class maps by nearest neighbour, so no colour is
    made up; small regions are enlarged to be seen)."""
    top, bottom, left, right = crop_box(box, image.shape)
    x, y, w, h = box
    scale = CROP_SIDE / max(bottom - top, right - left)
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    smooth = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    out = []
    for crop, interpolation in ((image[top:bottom, left:right], smooth),
                                (colorize(label[top:bottom, left:right], palette),
                                 cv2.INTER_NEAREST),
                                (colorize(prediction[top:bottom, left:right], palette),
                                 cv2.INTER_NEAREST)):
        crop = cv2.resize(np.ascontiguousarray(crop), size, interpolation=interpolation)
        corner = (round((x - left) * scale), round((y - top) * scale))
        far = (round((x - left + w) * scale) - 1, round((y - top + h) * scale) - 1)
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
        for region in suspect_regions(label, probabilities, self.confidence, self.min_area):
            x, y, w, h = region.box
            row = {'record': record, 'image': filename,
                   'annotated_class': self.class_names[region.annotated],
                   'predicted_class': self.class_names[region.predicted], 'area': region.area,
                   'confidence': round(region.confidence, 4), 'share': round(region.share, 4),
                   'score': round(region_score(region), 1), 'x': x, 'y': y, 'width': w,
                   'height': h}
            box = region.box
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
