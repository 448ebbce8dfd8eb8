"""Dataset layouts on disk: where the image/label pairs of a split are, and how labels are read.

Each layout lists (image_path, label_path) pairs. Labels are read as class indices; a colour
(3-channel) label where indices are expected is an error, never silently reinterpreted.
"""
import os

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.tif', '.tiff')

# The config shipped for each layout: its num_classes and void_label apply when --config is absent.
DEFAULT_CONFIGS = {
    'camvid': 'configs/camvid_fcn8s.yaml',
    'voc': 'configs/voc_fcn8s.yaml',
}
FORMATS = ('camvid', 'voc', 'folders', 'list')


class PairError(Exception):
    """An image/label pair that cannot be used; the message is the reason."""


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _images_in(directory):
    if not os.path.isdir(directory):
        raise FileNotFoundError('folder %s does not exist' % directory)
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if name.lower().endswith(IMAGE_EXTENSIONS))


def folder_pairs(image_dir, label_dir):
    """Pairs by file stem: IMAGE_DIR/NAME.jpg with LABEL_DIR/NAME.png.

    An image whose label is missing is returned with label_path None (reported as skipped).
    """
    labels = {_stem(p): p for p in _images_in(label_dir)}
    return [(p, labels.get(_stem(p))) for p in _images_in(image_dir)]


def list_pairs(list_file, root=None):
    """Pairs from a text file of `image label` lines (paths relative to `root` or the file)."""
    if not os.path.isfile(list_file):
        raise FileNotFoundError('list file %s does not exist' % list_file)
    root = root or os.path.dirname(os.path.abspath(list_file))
    pairs = []
    with open(list_file) as f:
        for line_number, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith('#'):
                continue
            if len(fields) != 2:
                raise ValueError('%s line %d: expected "image label", got %r'
                                 % (list_file, line_number, line.strip()))
            pairs.append(tuple(os.path.join(root, p.lstrip('/')) for p in fields))
    return pairs


def camvid_pairs(data_dir, split):
    """CamVid/SegNet layout: DATA_DIR/SPLIT/*.png with DATA_DIR/SPLITannot/*.png."""
    return folder_pairs(os.path.join(data_dir, split), os.path.join(data_dir, split + 'annot'))


def voc_pairs(data_dir, split):
    """PASCAL VOC2012: ImageSets/Segmentation/SPLIT.txt names JPEGImages/*.jpg, SegmentationClass/*.png."""
    list_file = os.path.join(data_dir, 'ImageSets', 'Segmentation', split + '.txt')
    if not os.path.isfile(list_file):
        raise FileNotFoundError('%s does not exist; --data_dir must be the VOC2012 folder (holding '
                                'JPEGImages/, SegmentationClass/, ImageSets/)' % list_file)
    with open(list_file) as f:
        names = [line.split()[0] for line in f if line.strip()]
    return [(os.path.join(data_dir, 'JPEGImages', n + '.jpg'),
             os.path.join(data_dir, 'SegmentationClass', n + '.png')) for n in names]


def find_pairs(dataset_format, data_dir=None, split=None, image_dir=None, label_dir=None,
               list_file=None):
    """The (image_path, label_path) pairs of one split, in a deterministic order."""
    if dataset_format == 'camvid':
        return camvid_pairs(data_dir, split)
    if dataset_format == 'voc':
        return voc_pairs(data_dir, split)
    if dataset_format == 'folders':
        return folder_pairs(image_dir, label_dir)
    if dataset_format == 'list':
        return list_pairs(list_file, data_dir)
    raise ValueError('unknown dataset format %r; choose one of %s'
                     % (dataset_format, ', '.join(FORMATS)))


def read_index_label(path):
    """Reads a label image of class indices (grayscale or palette PNG) as uint8 [h, w]."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            label = np.array(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise PairError('cannot read label %s (%s)' % (path, e)) from None
    if label.ndim == 3:
        channels = label[..., :3]
        if not (np.array_equal(channels[..., 0], channels[..., 1])
                and np.array_equal(channels[..., 0], channels[..., 2])):
            raise PairError('label %s is a %s colour image; expected class indices (grayscale or '
                            'palette PNG). Convert colour masks with a colour table first'
                            % (path, mode))
        label = channels[..., 0]
    if label.dtype != np.uint8:
        if label.max(initial=0) > 255:
            raise PairError('label %s has values above 255 (mode %s)' % (path, mode))
        label = label.astype(np.uint8)
    return label


def remap_and_check_label(label, num_classes, void_label, ignore_label, path):
    """Maps the dataset's void value to `ignore_label` and checks every value is a class or void."""
    label = label.copy()
    label[label == void_label] = ignore_label
    bad = (label >= num_classes) & (label != ignore_label)
    if bad.any():
        values = np.unique(label[bad])
        raise PairError('label %s has values %s outside 0..%d (void %d); check num_classes and '
                        'void_label in the config' % (path, values[:10].tolist(), num_classes - 1,
                                                      void_label))
    return label
