"""Dataset layouts on disk: where the image/label pairs of a split are, and how labels are read.

Each layout lists (image_path, label_path) pairs. Where files do not pair one to one, the entry
says so and the converter skips it with the reason (pairing_problem): a missing side is None,
and a side matched by several files (x.png and x.jpg for one stem) is the tuple of them. Labels
are read as class indices; a colour (3-channel) label where indices are expected is an error,
never silently reinterpreted.
"""
import os

import numpy as np
from PIL import Image

from utils.errors import ConfigError, DataError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.tif', '.tiff')

# The config shipped for each layout: its classes and label conventions apply without --config.
DEFAULT_CONFIGS = {
    'camvid': 'configs/camvid_fcn8s.yaml',
    'voc': 'configs/voc_fcn8s.yaml',
    'cityscapes': 'configs/cityscapes_fcn8s.yaml',
    'kitti_road': 'configs/kitti_road_fcn8s.yaml',
    'ade20k': 'configs/ade20k_fcn8s.yaml',
}
FORMATS = ('camvid', 'voc', 'folders', 'list', 'cityscapes', 'kitti_road', 'ade20k')


class PairError(Exception):
    """An image/label pair that cannot be used; the message is the reason."""


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _images_in(directory):
    if not os.path.isdir(directory):
        raise FileNotFoundError('folder %s does not exist' % directory)
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if name.lower().endswith(IMAGE_EXTENSIONS))


def _by_stem(paths):
    """{stem: its path, or the tuple of the paths sharing it}, in the order of `paths`."""
    groups = {}
    for path in paths:
        groups.setdefault(_stem(path), []).append(path)
    return {stem: group[0] if len(group) == 1 else tuple(group)
            for stem, group in groups.items()}


def folder_pairs(image_dir, label_dir):
    """Pairs by file stem: IMAGE_DIR/NAME.jpg with LABEL_DIR/NAME.png, in image name order.

    Files that do not pair one to one are listed for the converter to skip and report (see
    pairing_problem): an image without a label has label None; a label without an image comes
    after the pairs with image None; two images (or labels) of one stem are one tuple.
    """
    images = _by_stem(_images_in(image_dir))
    labels = _by_stem(_images_in(label_dir))
    pairs = [(image, labels.get(stem)) for stem, image in images.items()]
    return pairs + [(None, label) for stem, label in labels.items() if stem not in images]


def _named(kind, side):
    """'image a.png', or 'images a.png and a.jpg' for a side matched by several files."""
    if isinstance(side, tuple):
        return '%ss %s' % (kind, ' and '.join(side))
    return '%s %s' % (kind, side)


def pairing_problem(image_path, label_path):
    """Why a listed entry is not one image with one label (see folder_pairs), or None."""
    if image_path is None:
        stem = _stem(label_path[0] if isinstance(label_path, tuple) else label_path)
        return ('%s: no image has the stem %s; add the image or remove the label'
                % (_named('label', label_path), stem))
    if isinstance(image_path, tuple) and label_path is None:
        return ('%s share the stem %s, and no label has it; keep one image and add its label'
                % (_named('image', image_path), _stem(image_path[0])))
    if label_path is None:
        return 'image %s has no label file' % image_path
    for kind, side, other_kind, other in (('image', image_path, 'label', label_path),
                                          ('label', label_path, 'image', image_path)):
        if isinstance(side, tuple):
            return ('%s share the stem %s, so it is unclear which one pairs with %s; rename or '
                    'remove all but one' % (_named(kind, side), _stem(side[0]),
                                            _named(other_kind, other)))
    return None


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
                raise DataError('%s line %d: expected "image label", got %r'
                                % (list_file, line_number, line.strip()))
            pairs.append(tuple(os.path.join(root, p.lstrip('/')) for p in fields))
    return pairs


def camvid_pairs(data_dir, split):
    """CamVid/SegNet layout: DATA_DIR/SPLIT/*.png with DATA_DIR/SPLITannot/*.png."""
    return folder_pairs(os.path.join(data_dir, split), os.path.join(data_dir, split + 'annot'))


def voc_pairs(data_dir, split):
    """PASCAL VOC2012: ImageSets/Segmentation/SPLIT.txt names JPEGImages/*.jpg, and labels in
    SegmentationClass/*.png or, for the SBD-augmented sets (e.g. split `trainaug`),
    SegmentationClassAug/*.png."""
    list_file = os.path.join(data_dir, 'ImageSets', 'Segmentation', split + '.txt')
    if not os.path.isfile(list_file):
        raise FileNotFoundError('%s does not exist; --data_dir must be the VOC2012 folder (holding '
                                'JPEGImages/, SegmentationClass/, ImageSets/)' % list_file)
    with open(list_file) as f:
        names = [line.split()[0] for line in f if line.strip()]
    pairs = []
    for name in names:
        label = os.path.join(data_dir, 'SegmentationClass', name + '.png')
        augmented = os.path.join(data_dir, 'SegmentationClassAug', name + '.png')
        if not os.path.exists(label) and os.path.exists(augmented):
            label = augmented
        pairs.append((os.path.join(data_dir, 'JPEGImages', name + '.jpg'), label))
    return pairs


def cityscapes_pairs(data_dir, split):
    """Cityscapes: leftImg8bit/SPLIT/CITY/X_leftImg8bit.png with
    gtFine/SPLIT/CITY/X_gtFine_labelIds.png."""
    image_root = os.path.join(data_dir, 'leftImg8bit', split)
    if not os.path.isdir(image_root):
        raise FileNotFoundError('folder %s does not exist; --data_dir must hold leftImg8bit/ and '
                                'gtFine/' % image_root)
    pairs = []
    for city in sorted(os.listdir(image_root)):
        for path in _images_in(os.path.join(image_root, city)):
            stem = os.path.basename(path).replace('_leftImg8bit.png', '')
            pairs.append((path, os.path.join(data_dir, 'gtFine', split, city,
                                             stem + '_gtFine_labelIds.png')))
    return pairs


def kitti_road_pairs(data_dir, split):
    """KITTI road: SPLIT/image_2/um_000000.png with SPLIT/gt_image_2/um_road_000000.png."""
    pairs = []
    for path in _images_in(os.path.join(data_dir, split, 'image_2')):
        category, number = os.path.basename(path).rsplit('_', 1)
        pairs.append((path, os.path.join(data_dir, split, 'gt_image_2',
                                         '%s_road_%s' % (category, number))))
    return pairs


def ade20k_pairs(data_dir, split):
    """ADE20K / MIT Scene Parsing: images/SPLIT/*.jpg with annotations/SPLIT/*.png."""
    return folder_pairs(os.path.join(data_dir, 'images', split),
                        os.path.join(data_dir, 'annotations', split))


def find_pairs(dataset_format, data_dir=None, split=None, image_dir=None, label_dir=None,
               list_file=None):
    """The (image_path, label_path) pairs of one split, in a deterministic order."""
    by_split = {'camvid': camvid_pairs, 'voc': voc_pairs, 'cityscapes': cityscapes_pairs,
                'kitti_road': kitti_road_pairs, 'ade20k': ade20k_pairs}
    if dataset_format in by_split:
        return by_split[dataset_format](data_dir, split)
    if dataset_format == 'folders':
        return folder_pairs(image_dir, label_dir)
    if dataset_format == 'list':
        return list_pairs(list_file, data_dir)
    raise ConfigError('unknown dataset format %r; choose one of %s'
                      % (dataset_format, ', '.join(FORMATS)))


def read_label(path, color_map=()):
    """Reads a label file: class indices, or colours looked up in `color_map` when given."""
    if not color_map:
        return read_index_label(path)
    return read_color_label(path, color_map)


def read_color_label(path, color_map):
    """Colour-coded label -> uint8 [h, w] ids via [r, g, b, id] entries; an unknown colour is an
    error naming the file and the colour."""
    try:
        with Image.open(path) as im:
            rgb = np.array(im.convert('RGB'))
    except (OSError, SyntaxError, ValueError) as e:
        raise PairError('cannot read label %s (%s)' % (path, e)) from None
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    table = {(r << 16) | (g << 8) | b: train_id for r, g, b, train_id in color_map}
    unique, inverse = np.unique(codes, return_inverse=True)
    unknown = [u for u in unique if int(u) not in table]
    if unknown:
        u = int(unknown[0])
        raise PairError('label %s has colour (%d, %d, %d), which is not in the color_map of the '
                        'config' % (path, u >> 16, (u >> 8) & 255, u & 255))
    return np.array([table[int(u)] for u in unique], np.uint8)[inverse].reshape(codes.shape)


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


def label_lookup_table(void_label, ignore_label, label_map=None, label_map_default=None,
                       label_offset=0):
    """int [256] table from on-disk label values to train ids.

    With `label_map` (e.g. Cityscapes ids -> train ids) listed ids map as given and others to
    `label_map_default`; without it, values are shifted by `label_offset` (ADE20K: -1). The
    dataset's `void_label` maps to `ignore_label` unless `label_map` lists it (binary masks
    stored as 0/255: {0: 0, 255: 1}).
    """
    values = np.arange(256)
    if label_map:
        table = np.full(256, ignore_label if label_map_default is None else label_map_default)
        for source, target in label_map.items():
            table[source] = target
    else:
        table = values + label_offset
    if not (label_map and void_label in label_map):  # an explicit mapping of it wins
        table[void_label] = ignore_label
    return table


def remap_and_check_label(label, table, num_classes, ignore_label, path):
    """Applies the lookup table and checks every value became a class id or `ignore_label`."""
    mapped = table[label]
    bad = ((mapped < 0) | (mapped >= num_classes)) & (mapped != ignore_label)
    if bad.any():
        values = np.unique(label[bad])
        raise PairError('label %s has values %s outside the classes 0..%d and void; check '
                        'num_classes, void_label and label_map in the config'
                        % (path, values[:10].tolist(), num_classes - 1))
    return mapped.astype(np.uint8)
