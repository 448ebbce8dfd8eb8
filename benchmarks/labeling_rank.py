"""What to label next, measured: rank_for_labeling.py on a folder of 40 CamVid val images with
exact and re-encoded duplicates, images of another domain (the demo's synthetic scenes) and a
file that is not an image; prints where the foreign images rank and whether a duplicate took a
second place in the top N.

    python benchmarks/labeling_rank.py --run_dir runs/camvid --camvid ../shared/data/camvid \
        --work_dir runs/rank_check --json rank.json

The folder: 40 val images spread over the split, 3 exact copies and 1 JPEG (quality 70) copy
of 4 of them, 4 synthetic scenes at CamVid's size, and notes.txt.
"""
import csv
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from utils.data.demo import make_scene  # noqa: E402

NUM_CAMVID = 40
NUM_FOREIGN = 4
TOP = 10


def make_folder(camvid_dir, folder):
    """Writes the test folder; returns {'foreign': [names], 'copies': {copy: original}}."""
    os.makedirs(folder)
    names = sorted(os.listdir(os.path.join(camvid_dir, 'val')))
    chosen = [names[i] for i in np.linspace(0, len(names) - 1, NUM_CAMVID).round().astype(int)]
    for name in chosen:
        shutil.copyfile(os.path.join(camvid_dir, 'val', name), os.path.join(folder, name))
    copies = {}
    for k, name in enumerate(chosen[5:35:10]):  # exact copies
        copies['copy%d_%s' % (k, name)] = name
        shutil.copyfile(os.path.join(folder, name), os.path.join(folder, 'copy%d_%s' % (k, name)))
    jpeg = 'reencoded_' + chosen[20].replace('.png', '.jpg')
    cv2.imwrite(os.path.join(folder, jpeg), cv2.imread(os.path.join(folder, chosen[20])),
                [cv2.IMWRITE_JPEG_QUALITY, 70])
    copies[jpeg] = chosen[20]
    rng = np.random.RandomState(7)
    foreign = []
    for k in range(NUM_FOREIGN):
        image, _ = make_scene(rng, 360, 480)
        foreign.append('synthetic_%d.png' % k)
        cv2.imwrite(os.path.join(folder, foreign[-1]), image[..., ::-1])
    with open(os.path.join(folder, 'notes.txt'), 'w') as f:
        f.write('not an image\n')
    return {'foreign': foreign, 'copies': copies}


def check(rows, made, top=TOP):
    """Figures of a to_label.csv (rows as read) against the folder's contents."""
    by_name = {os.path.basename(r['image']): r for r in rows}
    selected = [os.path.basename(r['image']) for r in rows if r['selected'] == 'True']
    twice = [(c, o) for c, o in made['copies'].items() if c in selected and o in selected]
    return {'images_ranked': len(rows),
            'foreign_ranks': sorted(int(by_name[n]['rank']) for n in made['foreign']),
            'duplicates_marked': sum(1 for c, o in made['copies'].items()
                                     if by_name[c]['duplicate_of'] or by_name[o]['duplicate_of']),
            'duplicates': len(made['copies']), 'selected': len(selected),
            'a_duplicate_twice_in_top': twice}


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--run_dir', required=True)
    p.add_argument('--camvid', required=True)
    p.add_argument('--work_dir', required=True, help='the folder and the ranking go here '
                   '(replaced)')
    p.add_argument('--json')
    args = p.parse_args(argv)
    if os.path.exists(args.work_dir):
        shutil.rmtree(args.work_dir)
    folder = os.path.join(args.work_dir, 'unlabelled')
    made = make_folder(args.camvid, folder)
    out = os.path.join(args.work_dir, 'rank')
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'rank_for_labeling.py'),
                           '--run_dir', args.run_dir, '--input', folder, '--output_dir', out,
                           '--top', str(TOP)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    with open(os.path.join(out, 'to_label.csv')) as f:
        figures = check(list(csv.DictReader(f)), made)
    figures['skipped_named'] = 'notes.txt' in done.stderr
    print('%d images ranked; foreign images at ranks %s; %d of %d duplicates marked; a '
          'duplicate twice in the top %d: %s; notes.txt skipped and named: %s'
          % (figures['images_ranked'], figures['foreign_ranks'], figures['duplicates_marked'],
             figures['duplicates'], TOP, figures['a_duplicate_twice_in_top'] or 'none',
             figures['skipped_named']))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
