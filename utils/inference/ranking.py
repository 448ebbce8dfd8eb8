"""What to label next: unlabelled images ranked by how unsure the model is of them.

    rows = rank_images(predictor, paths, top=20)   # every image, most uncertain first

An image's score is the mean over its pixels of the normalised entropy of the model's
probabilities (utils.inference.soft_outputs): 1 where the model cannot tell any class apart,
0 where it is sure everywhere. Ties keep the images' path order. Near-duplicates (a video's
consecutive frames, copies) would fill the top with one scene: each image gets a difference
hash (dHash, 64 bits of a 9x8 grey thumbnail), and an image within DUPLICATE_BITS bits of an
image ranked above it is marked `duplicate_of` that image and takes no place in the top N
(exact copies differ by 0 bits).
"""
import cv2

from utils.inference.image_files import predict_capped
from utils.inference.soft_outputs import normalised_entropy
from utils.inference.tiling import blended_rows

# Two dHashes this close (bits of 64) are one scene. Measured on CamVid train (367 frames):
# a JPEG (quality 70) copy of a frame differs by at most 5 bits, a half-size copy by at most 3;
# neighbouring frames of the split (a second apart) by 15 in the median (2 at least), so most
# stay apart; of 2000 random pairs of frames 2 (0.1%) are within 5 bits, the closest 4.
DUPLICATE_BITS = 5
HASH_SIZE = 8


def difference_hash(image):
    """int: the 64-bit dHash of an RGB image (is each pixel of a 9x8 grey thumbnail brighter
    than its right neighbour)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (HASH_SIZE + 1, HASH_SIZE), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hash_distance(a, b):
    return bin(a ^ b).count('1')


def mean_uncertainty(predictor, image, max_side=0, tiling=None):
    """The mean normalised entropy of the RGB image's probabilities: whole (at most
    `max_side`) or by tiles at full resolution (the rows of tiles never all held)."""
    if not tiling:
        return float(normalised_entropy(predict_capped(predictor, image, max_side)[1]).mean())
    total = 0.0
    for _, rows in blended_rows(predictor, image, tiling):
        total += float(normalised_entropy(rows).sum())
    return total / (image.shape[0] * image.shape[1])


def rank_images(scored, top):
    """Rows of (path, uncertainty, hash) triples, most uncertain first (ties: input order),
    each {'rank', 'image', 'mean_uncertainty', 'duplicate_of', 'selected'}: the first `top`
    images that duplicate none ranked above them are selected."""
    order = sorted(range(len(scored)), key=lambda i: -scored[i][1])
    rows, kept = [], []  # kept: (hash, path) of the images ranked so far that are not copies
    selected = 0
    for rank, i in enumerate(order, 1):
        path, uncertainty, image_hash = scored[i]
        original = next((p for h, p in kept if hash_distance(h, image_hash) <= DUPLICATE_BITS),
                        None)
        if original is None:
            kept.append((image_hash, path))
        chosen = original is None and selected < top
        selected += chosen
        rows.append({'rank': rank, 'image': path, 'mean_uncertainty': round(uncertainty, 5),
                     'duplicate_of': original or '', 'selected': chosen})
    return rows
