"""Annotations that look wrong, measured: plant five annotation errors in a copy of part of
CamVid val, and count how many of them a trained run's suspect finder ranks in its top 10, at
several confidence thresholds (evaluate.py --suspect_confidence is chosen on this).

    python benchmarks/planted_errors.py --run_dir runs/camvid --camvid ../shared/data/camvid \
        --work_dir runs/planted --json planted.json

The copy holds every 5th val pair (21 of 101). Each planted error relabels one whole connected
region of one class as another, in an image of its own, as an annotator who picked the wrong
class would: a car as road, a pedestrian as pavement, a patch of sky as building, a tree as
building, a bicyclist as road (the region of the copy closest to the middle of its area range
in PLANTS: mid-sized errors, neither the easiest nor specks). A planted region is found when a
suspect region of its image with the planted class as annotated and the true class as
predicted overlaps its box.
"""
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

# (true class, planted class, area range in pixels at 360x480), CamVid's 11 classes.
CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol',
                  'Fence', 'Car', 'Pedestrian', 'Bicyclist')
PLANTS = ((8, 3, (1500, 20000)),    # Car -> Road
          (9, 4, (300, 5000)),      # Pedestrian -> Pavement
          (0, 1, (3000, 30000)),    # Sky -> Building
          (5, 1, (1500, 40000)),    # Tree -> Building
          (10, 3, (300, 8000)))     # Bicyclist -> Road
EVERY = 5  # the copy holds every EVERY-th val pair
THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
TOP = 10


def copy_val_part(camvid_dir, out_dir, every=EVERY, scale=1.0):
    """Copies every `every`-th CamVid val pair to OUT_DIR/val and OUT_DIR/valannot (resized by
    `scale`: images by area, labels by nearest neighbour); returns [(image path, label path)]
    of the copy."""
    names = sorted(os.listdir(os.path.join(camvid_dir, 'val')))[::every]
    pairs = []
    for folder in ('val', 'valannot'):
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    for name in names:
        for folder, interpolation in (('val', cv2.INTER_AREA), ('valannot', cv2.INTER_NEAREST)):
            source, target = (os.path.join(camvid_dir, folder, name),
                              os.path.join(out_dir, folder, name))
            if scale == 1.0:
                shutil.copyfile(source, target)
                continue
            picture = cv2.imread(source, cv2.IMREAD_UNCHANGED)
            size = (round(picture.shape[1] * scale), round(picture.shape[0] * scale))
            cv2.imwrite(target, cv2.resize(picture, size, interpolation=interpolation))
        pairs.append((os.path.join(out_dir, 'val', name),
                      os.path.join(out_dir, 'valannot', name)))
    return pairs


def plant_errors(pairs, plants=PLANTS, scale=1.0):
    """Relabels, for each plant, the region of its true class closest to the middle of its area
    range, each in another image of `pairs` (label files rewritten in place). Returns
    [{'image', 'true_class', 'planted_class', 'area', 'box'}]."""
    planted, used = [], set()
    labels = {label_path: cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
              for _, label_path in pairs}
    for true_class, planted_class, (low, high) in plants:
        low, high = low * scale ** 2, high * scale ** 2
        best = None
        for image_path, label_path in pairs:
            if label_path in used:
                continue
            label = labels[label_path]
            count, components, stats, _ = cv2.connectedComponentsWithStats(
                (label == true_class).astype(np.uint8), connectivity=8)
            for k in range(1, count):
                area = int(stats[k, cv2.CC_STAT_AREA])
                # The region closest to the range's middle (geometric): mid-sized errors.
                distance = abs(np.log(area / np.sqrt(low * high)))
                if low <= area <= high and (best is None or distance < best[0]):
                    best = (distance, image_path, label_path, components == k,
                            tuple(int(v) for v in stats[k, :4]))
        if best is None:
            raise ValueError('no %s region of %d-%d pixels left to relabel'
                             % (CAMVID_CLASSES[true_class], low, high))
        _, image_path, label_path, mask, box = best
        area = int(mask.sum())
        labels[label_path][mask] = planted_class
        cv2.imwrite(label_path, labels[label_path])
        used.add(label_path)
        planted.append({'image': os.path.basename(image_path),
                        'true_class': CAMVID_CLASSES[true_class],
                        'planted_class': CAMVID_CLASSES[planted_class], 'area': area,
                        'box': box})
    return planted


def boxes_overlap(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def rank_of(plant, rows):
    """The 1-based rank of the best-ranked suspect row that matches `plant`, or None."""
    for rank, row in enumerate(rows, 1):
        box = tuple(int(row[k]) for k in ('x', 'y', 'width', 'height'))
        if (os.path.basename(row['image']) == plant['image']
                and row['annotated_class'] == plant['planted_class']
                and row['predicted_class'] == plant['true_class']
                and boxes_overlap(box, plant['box'])):
            return rank
    return None


def found_in(planted, rows, top=TOP):
    """The planted errors among the `top` best-ranked suspect rows (as suspect_labels.csv
    holds them: image, annotated_class, predicted_class, x, y, width, height)."""
    return [plant for plant in planted if (rank_of(plant, rows) or top + 1) <= top]


def measure(args):
    from utils.data.layouts import read_label
    from utils.evaluation.suspects import DEFAULT_MIN_AREA, SuspectFinder
    from utils.inference.predictor import Predictor
    if os.path.exists(args.work_dir):
        shutil.rmtree(args.work_dir)
    pairs = copy_val_part(args.camvid, args.work_dir, scale=args.scale)
    planted = plant_errors(pairs, scale=args.scale)
    predictor = Predictor.from_run(args.run_dir)
    names = list(predictor.config.class_names)
    if names != list(CAMVID_CLASSES):
        raise SystemExit('%s is not a run on CamVid\'s 11 classes (%s)' % (args.run_dir, names))
    min_area = max(1, round(DEFAULT_MIN_AREA * args.scale ** 2))
    finders = {t: SuspectFinder(len(names), np.zeros((len(names), 3), np.uint8), names, t,
                                min_area, num_shown=0) for t in THRESHOLDS}
    for image_path, label_path in pairs:
        image = cv2.imread(image_path)[..., ::-1]
        label = read_label(label_path, ()).astype(np.int64)
        label[label == 11] = 255  # CamVid's void
        probabilities = predictor.predict(image)
        for finder in finders.values():
            finder.add(image_path, image_path, image, label, probabilities)
    results = []
    for threshold, finder in finders.items():
        rows = finder.ranked_rows()
        found = found_in(planted, rows)
        results.append({'confidence': threshold, 'regions': len(rows),
                        'found_in_top_10': len(found),
                        'found': [p['true_class'] + ' as ' + p['planted_class'] for p in found],
                        'ranks': [rank_of(p, rows) for p in planted]})
        print('--suspect_confidence %.2f: %d regions, %d of %d planted errors in the top %d '
              '(%s); ranks %s' % (threshold, len(rows), len(found), len(planted), TOP,
                                  ', '.join(results[-1]['found']), results[-1]['ranks']))
        if args.verbose:
            for row in rows[:TOP]:
                print('   ', row)
    return {'run_dir': os.path.abspath(args.run_dir), 'images': len(pairs), 'planted': planted,
            'scale': args.scale, 'min_area': min_area, 'results': results}


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--run_dir', required=True, help='a train.py run on CamVid\'s 11 classes')
    p.add_argument('--camvid', required=True, help='the CamVid folder (val/, valannot/)')
    p.add_argument('--work_dir', required=True, help='the planted copy goes here (replaced)')
    p.add_argument('--json', help='write the figures here')
    p.add_argument('--scale', type=float, default=1.0,
                   help='resize the copy by this factor (0.5: a run trained at half size)')
    p.add_argument('--verbose', action='store_true', help='print the top regions')
    args = p.parse_args(argv)
    from utils.startup import import_tensorflow_quietly
    import_tensorflow_quietly()
    record = measure(args)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(record, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
