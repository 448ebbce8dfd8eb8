import json
import os

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from PIL import Image

from tests.conftest import ROOT, run_in_process
from utils.data.conversion import convert_pairs, make_label_spec
from utils.data.records import REPORT_SUFFIX
from utils.data.layouts import camvid_pairs, voc_pairs
from utils.data.records import (KEY_ENCODED, KEY_FILENAME, KEY_FORMAT, KEY_HEIGHT,
                                KEY_LABEL, KEY_WIDTH, parse_example)
from utils.visualization import default_palette


def read_records(path):
    """All examples of a record file through the real reader: [(image, label, filename)]."""
    dataset = tf.data.TFRecordDataset([path]).map(parse_example)
    item = tf.data.make_one_shot_iterator(dataset).get_next()
    out = []
    with tf.Session() as sess:
        while True:
            try:
                ex = sess.run(item)
            except tf.errors.OutOfRangeError:
                return out
            out.append((ex['image'], ex['label'], ex['filename'].decode()))


def write_camvid(root, split, count, num_classes=5, void=11, size=(20, 30)):
    rng = np.random.RandomState(count)
    os.makedirs(os.path.join(root, split), exist_ok=True)
    os.makedirs(os.path.join(root, split + 'annot'), exist_ok=True)
    pairs = []
    for i in range(count):
        image = rng.randint(0, 256, size + (3,), dtype=np.uint8)
        label = rng.randint(0, num_classes, size).astype(np.uint8)
        label[:2] = void
        name = 'f%03d.png' % i
        cv2.imwrite(os.path.join(root, split, name), image[..., ::-1])
        cv2.imwrite(os.path.join(root, split + 'annot', name), label)
        pairs.append((image, label))
    return pairs


def convert(pairs, path, num_classes=5, void=11, **kw):
    return convert_pairs(pairs, path, make_label_spec(num_classes, void), log=lambda *_: None,
                         **kw)


def test_camvid_round_trip_is_bit_identical(tmp_path):
    originals = write_camvid(str(tmp_path), 'val', 4)
    out = str(tmp_path / 'val.record')
    report = convert(camvid_pairs(str(tmp_path), 'val'), out)
    assert report['pairs_written'] == 4 and report['pairs_skipped'] == 0
    records = read_records(out)
    assert [r[2] for r in records] == ['f%03d.png' % i for i in range(4)]
    for (image, label), (rec_image, rec_label, _) in zip(originals, records):
        np.testing.assert_array_equal(rec_image, image)
        expected = np.where(label == 11, 255, label)  # CamVid void 11 -> 255
        np.testing.assert_array_equal(rec_label, expected)
    saved = json.load(open(out + REPORT_SUFFIX))
    counts = np.bincount(np.concatenate([p[1].ravel() for p in originals]), minlength=12)
    assert saved['class_pixel_counts'] == counts[:5].tolist()
    assert saved['ignored_pixel_count'] == counts[11]


def test_voc_palette_labels_and_jpeg_bytes(tmp_path):
    root = tmp_path / 'VOC2012'
    for d in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        os.makedirs(root / d)
    rng = np.random.RandomState(0)
    palette = default_palette(256).ravel().tolist()
    labels = {}
    for name in ('2007_000032', '2007_000039'):
        image = rng.randint(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / 'JPEGImages' / (name + '.jpg'), quality=90)
        label = rng.randint(0, 21, (24, 32)).astype(np.uint8)
        label[5:8] = 255  # VOC boundary
        im = Image.fromarray(label, mode='P')
        im.putpalette(palette)
        im.save(root / 'SegmentationClass' / (name + '.png'))
        labels[name] = label
    (root / 'ImageSets/Segmentation/train.txt').write_text('2007_000032\n2007_000039\n')
    out = str(tmp_path / 'voc.record')
    convert(voc_pairs(str(root), 'train'), out, num_classes=21, void=255)
    for rec in tf.io.tf_record_iterator(out):
        ex = tf.train.Example.FromString(rec)
        f = ex.features.feature
        name = f[KEY_FILENAME].bytes_list.value[0].decode()[:-4]
        assert f[KEY_FORMAT].bytes_list.value[0] == b'jpeg'
        original = (root / 'JPEGImages' / (name + '.jpg')).read_bytes()
        assert f[KEY_ENCODED].bytes_list.value[0] == original  # stored as-is, no re-encoding
    for _, label, filename in read_records(out):
        np.testing.assert_array_equal(label, labels[filename[:-4]])


def test_homework_raw_label_records_are_readable(tmp_path):
    rng = np.random.RandomState(1)
    image = rng.randint(0, 256, (7, 9, 3), dtype=np.uint8)
    label = rng.randint(0, 21, (7, 9)).astype(np.uint8)
    feature = {
        KEY_HEIGHT: tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
        KEY_WIDTH: tf.train.Feature(int64_list=tf.train.Int64List(value=[9])),
        KEY_FILENAME: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'a.jpg'])),
        KEY_ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[cv2.imencode('.png', image[..., ::-1])[1].tobytes()])),
        KEY_FORMAT: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'png'])),
        KEY_LABEL: tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.tobytes()])),
    }
    path = str(tmp_path / 'homework.record')
    with tf.io.TFRecordWriter(path) as w:
        w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    [(rec_image, rec_label, name)] = read_records(path)
    np.testing.assert_array_equal(rec_image, image)
    np.testing.assert_array_equal(rec_label, label)
    assert name == 'a.jpg'


def test_bad_pairs_are_skipped_with_their_file_names(tmp_path):
    root = str(tmp_path)
    write_camvid(root, 'train', 8)
    img, ann = os.path.join(root, 'train'), os.path.join(root, 'trainannot')
    with open(os.path.join(img, 'f000.png'), 'wb') as f:
        f.write(b'not an image at all')
    data = open(os.path.join(img, 'f001.png'), 'rb').read()
    with open(os.path.join(img, 'f001.png'), 'wb') as f:
        f.write(data[:len(data) // 3])  # truncated PNG
    cv2.imwrite(os.path.join(ann, 'f002.png'), np.zeros((10, 10), np.uint8))  # size mismatch
    cv2.imwrite(os.path.join(ann, 'f003.png'), np.full((20, 30), 40, np.uint8))  # out of range
    rgb = np.random.RandomState(0).randint(0, 255, (20, 30, 3), dtype=np.uint8)
    cv2.imwrite(os.path.join(ann, 'f004.png'), rgb)  # colour mask where indices are expected
    os.remove(os.path.join(ann, 'f005.png'))  # missing partner
    out = str(tmp_path / 'out.record')
    report = convert(camvid_pairs(root, 'train'), out)
    assert report['pairs_written'] == 2 and report['pairs_skipped'] == 6
    reasons = {os.path.basename(s['image']): s['reason'] for s in report['skipped']}
    assert 'decode' in reasons['f000.png'] and 'f000.png' in reasons['f000.png']
    assert 'f001.png' in reasons['f001.png']
    assert 'size mismatch' in reasons['f002.png']
    assert '40' in reasons['f003.png'] and 'outside' in reasons['f003.png']
    assert 'colour' in reasons['f004.png']
    assert 'no label' in reasons['f005.png']
    assert [r[2] for r in read_records(out)] == ['f006.png', 'f007.png']


def run_converter(*args):
    return run_in_process('convert_fcn_dataset.py', *args)


def test_cli_strict_and_empty_input_keep_earlier_output(tmp_path):
    root = str(tmp_path)
    write_camvid(root, 'val', 3)
    out = str(tmp_path / 'val.record')
    ok = run_converter('--dataset_format', 'camvid', '--data_dir', root, '--split', 'val',
                    '--output_path', out)
    assert ok.returncode == 0, ok.stderr
    assert 'Wrote 3 of 3 pairs' in ok.stdout
    before = open(out, 'rb').read()
    cv2.imwrite(os.path.join(root, 'valannot', 'f001.png'), np.full((20, 30), 99, np.uint8))
    strict = run_converter('--dataset_format', 'camvid', '--data_dir', root, '--split', 'val',
                           '--output_path', out, '--strict', '--overwrite')
    assert strict.returncode != 0 and '1 of 3 pairs are unusable (--strict)' in strict.stderr
    os.makedirs(os.path.join(root, 'empty'))
    os.makedirs(os.path.join(root, 'emptyannot'))
    empty = run_converter('--dataset_format', 'camvid', '--data_dir', root, '--split', 'empty',
                          '--output_path', out, '--overwrite')
    assert empty.returncode != 0 and 'no image/label pairs' in empty.stderr
    missing = run_converter('--dataset_format', 'camvid', '--data_dir', root, '--split', 'nope',
                            '--output_path', out, '--overwrite')
    assert missing.returncode != 0 and 'nope' in missing.stderr
    assert open(out, 'rb').read() == before  # earlier output untouched
    assert not [n for n in os.listdir(root) if n.endswith('.tmp')]


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    from utils.config import resolve_config
    from utils.data.layouts import cityscapes_pairs
    root = tmp_path / 'cs'
    rng = np.random.RandomState(2)
    ids = rng.randint(0, 34, (16, 24)).astype(np.uint8)
    for city in ('aachen', 'bochum'):
        os.makedirs(root / 'leftImg8bit' / 'val' / city)
        os.makedirs(root / 'gtFine' / 'val' / city)
        stem = '%s_000000_000019' % city
        cv2.imwrite(str(root / 'leftImg8bit/val' / city / (stem + '_leftImg8bit.png')),
                    rng.randint(0, 256, (16, 24, 3), dtype=np.uint8))
        cv2.imwrite(str(root / 'gtFine/val' / city / (stem + '_gtFine_labelIds.png')), ids)
    for name, expected in (('cityscapes_fcn8s.yaml', None), ('cityscapes7_fcn8s.yaml', 7)):
        config = resolve_config(os.path.join(ROOT, 'configs', name))
        spec = make_label_spec(config.num_classes, config.void_label, config.label_map,
                               config.label_map_default, config.label_offset)
        out = str(tmp_path / (name + '.record'))
        report = convert_pairs(cityscapes_pairs(str(root), 'val'), out, spec, log=print)
        assert report['pairs_written'] == 2
        label = read_records(out)[0][1]
        reference = np.full(ids.shape, 255 if expected is None else 6)
        for source, target in config.label_map.items():
            reference[ids == source] = target
        reference[ids == 0] = 255
        np.testing.assert_array_equal(label, reference)
        if expected is None:  # spot checks against the official table
            assert (label[ids == 7] == 0).all() and (label[ids == 26] == 13).all()
            assert (label[ids == 4] == 255).all()


def test_kitti_colour_masks_and_unknown_colour(tmp_path):
    from utils.config import resolve_config
    from utils.data.layouts import kitti_road_pairs
    root = tmp_path / 'kitti' / 'training'
    os.makedirs(root / 'image_2')
    os.makedirs(root / 'gt_image_2')
    rng = np.random.RandomState(3)
    mask = np.zeros((10, 20, 3), np.uint8)
    mask[:] = (255, 0, 0)
    mask[5:, :10] = (255, 0, 255)
    mask[0, 0] = (0, 0, 0)
    for name in ('um_000000', 'uu_000001'):
        cv2.imwrite(str(root / 'image_2' / (name + '.png')),
                    rng.randint(0, 256, (10, 20, 3), dtype=np.uint8))
        category, number = name.split('_')
        cv2.imwrite(str(root / 'gt_image_2' / ('%s_road_%s.png' % (category, number))),
                    mask[..., ::-1])
    bad = mask.copy()
    bad[3, 3] = (1, 2, 3)
    cv2.imwrite(str(root / 'gt_image_2' / 'uu_road_000001.png'), bad[..., ::-1])
    config = resolve_config(os.path.join(ROOT, 'configs', 'kitti_road_fcn8s.yaml'))
    spec = make_label_spec(config.num_classes, config.void_label, color_map=config.color_map)
    out = str(tmp_path / 'kitti.record')
    report = convert_pairs(kitti_road_pairs(str(tmp_path / 'kitti'), 'training'), out, spec,
                           log=lambda *_: None)
    assert report['pairs_written'] == 1
    assert 'uu_road_000001.png' in report['skipped'][0]['reason']
    assert '(1, 2, 3)' in report['skipped'][0]['reason']
    label = read_records(out)[0][1]
    assert label[0, 0] == 255 and (label[5:, :10] == 1).all() and label[0, 5] == 0


def test_ade20k_ids_are_shifted_and_zero_ignored(tmp_path):
    from utils.config import resolve_config
    from utils.data.layouts import ade20k_pairs
    root = tmp_path / 'ADEChallengeData2016'
    os.makedirs(root / 'images' / 'validation')
    os.makedirs(root / 'annotations' / 'validation')
    label = np.random.RandomState(4).randint(0, 151, (12, 14)).astype(np.uint8)
    Image.fromarray(np.zeros((12, 14, 3), np.uint8)).save(
        root / 'images/validation/ADE_val_00000001.jpg')
    cv2.imwrite(str(root / 'annotations/validation/ADE_val_00000001.png'), label)
    config = resolve_config(os.path.join(ROOT, 'configs', 'ade20k_fcn8s.yaml'))
    spec = make_label_spec(config.num_classes, config.void_label, label_offset=config.label_offset)
    out = str(tmp_path / 'ade.record')
    convert_pairs(ade20k_pairs(str(root), 'validation'), out, spec, log=lambda *_: None)
    got = read_records(out)[0][1]
    np.testing.assert_array_equal(got, np.where(label == 0, 255, label.astype(int) - 1))


def test_shards_and_workers_give_the_same_examples(tmp_path):
    from utils.data.records import resolve_record_paths
    root = str(tmp_path)
    write_camvid(root, 'train', 9)
    pairs = camvid_pairs(root, 'train')
    one = str(tmp_path / 'one.record')
    many = str(tmp_path / 'many.record')
    report1 = convert(pairs, one)
    report3 = convert(pairs, many, num_shards=3, num_workers=2)
    shards = resolve_record_paths(many)
    assert [os.path.basename(p) for p in shards] == ['many.record-%05d-of-00003' % i
                                                     for i in range(3)]
    single = list(tf.io.tf_record_iterator(one))
    sharded = [list(tf.io.tf_record_iterator(p)) for p in shards]
    assert sum(sharded, []) == single  # contiguous blocks, in input order
    assert [len(s) for s in sharded] == [3, 3, 3]
    again = str(tmp_path / 'again.record')
    convert(pairs, again, num_workers=2)
    assert open(again, 'rb').read() == open(one, 'rb').read()  # byte-identical
    assert report1['class_pixel_counts'] == report3['class_pixel_counts']


def test_report_frequencies_and_weights_match_numpy(tmp_path):
    root = str(tmp_path)
    originals = write_camvid(root, 'train', 5)
    report = convert(camvid_pairs(root, 'train'), str(tmp_path / 'r.record'))
    labels = [np.where(label == 11, 255, label) for _, label in originals]
    counts = np.array([sum((label == c).sum() for label in labels) for c in range(5)])
    np.testing.assert_allclose(report['class_frequencies'], counts / counts.sum(), atol=1e-6)
    image_totals = np.array([sum((label != 255).sum() for label in labels if (label == c).any())
                             for c in range(5)])
    freq = counts / image_totals
    np.testing.assert_allclose(report['median_frequency_weights'], np.median(freq) / freq,
                               atol=1e-4)


def test_min_size_and_verify(tmp_path):
    root = str(tmp_path)
    write_camvid(root, 'val', 2)
    out = str(tmp_path / 'v.record')
    result = run_converter('--dataset_format', 'camvid', '--data_dir', root, '--split', 'val',
                        '--output_path', out, '--min_size', '32,32')
    assert result.returncode == 1 and 'smaller than the minimum size' in result.stderr
    result = run_converter('--dataset_format', 'camvid', '--data_dir', root, '--split', 'val',
                        '--output_path', out, '--num_workers', '2')
    assert result.returncode == 0, result.stderr
    check = run_converter('--verify', '--output_path', out, '--config',
                       os.path.join(ROOT, 'configs', 'camvid_fcn8s.yaml'))
    assert check.returncode == 0 and 'Verified 2 records' in check.stdout
    data = open(out, 'rb').read()
    with open(out, 'wb') as f:
        f.write(data[:len(data) // 2])
    check = run_converter('--verify', '--output_path', out, '--num_classes', '5')
    assert check.returncode == 1 and 'truncated or corrupt' in check.stdout


def test_list_and_folders_layouts_agree(tmp_path):
    from utils.data.layouts import folder_pairs, list_pairs
    root = str(tmp_path)
    write_camvid(root, 'train', 3)
    with open(os.path.join(root, 'pairs.txt'), 'w') as f:
        for i in range(3):
            f.write('train/f%03d.png trainannot/f%03d.png\n' % (i, i))
    by_list = list_pairs(os.path.join(root, 'pairs.txt'))
    by_folders = folder_pairs(os.path.join(root, 'train'), os.path.join(root, 'trainannot'))
    assert by_list == by_folders
    with open(os.path.join(root, 'bad.txt'), 'w') as f:
        f.write('only_one_path.png\n')
    with pytest.raises(ValueError, match='bad.txt line 1'):
        list_pairs(os.path.join(root, 'bad.txt'))


def test_dataset_page_shows_classes_values_sizes_and_random_pairs(tmp_path):
    import yaml
    from tests.conftest import page_in_browser
    root = str(tmp_path)
    rng = np.random.RandomState(3)
    labels = []
    for split in ('train', 'trainannot'):
        os.makedirs(os.path.join(root, split))
    for i in range(10):  # two sizes; class 3 never drawn; void (11) in the top rows
        size = (24, 32) if i < 7 else (30, 20)
        label = rng.choice([0, 1, 2, 4], size).astype(np.uint8)
        label[:3] = 11
        cv2.imwrite(os.path.join(root, 'train', 'f%02d.png' % i),
                    rng.randint(0, 256, size + (3,), np.uint8))
        cv2.imwrite(os.path.join(root, 'trainannot', 'f%02d.png' % i), label)
        labels.append(label)
    config = tmp_path / 'data.yaml'
    config.write_text('num_classes: 5\nvoid_label: 11\nclass_names: [sky, <b>road</b>, car, '
                      'bike, tree]\n')
    out = str(tmp_path / 'train.record')
    done = run_converter('--dataset_format', 'camvid', '--data_dir', root, '--split', 'train',
                         '--output_path', out, '--config', str(config))
    assert done.returncode == 0, done.stderr
    page_path = out + '.dataset.html'
    assert page_path in done.stdout
    report = json.load(open(out + REPORT_SUFFIX))
    assert report['class_image_counts'] == [sum(bool((lb == c).any()) for lb in labels)
                                            for c in range(5)]
    values = {v['value']: (v['pixels'], v['stored_as']) for v in report['label_values']}
    assert values == {v: (sum(int((lb == v).sum()) for lb in labels), 255 if v == 11 else v)
                      for v in (0, 1, 2, 4, 11)}
    assert report['image_sizes'] == [{'height': 24, 'width': 32, 'count': 7},
                                     {'height': 30, 'width': 20, 'count': 3}]
    page = open(page_path).read()
    assert '&lt;b&gt;road&lt;/b&gt;' in page and '<b>road' not in page
    assert '1 class(es) have no pixel: bike' in page
    weights = page.split('<pre id="class-weights">')[1].split('</pre>')[0]
    np.testing.assert_allclose(yaml.safe_load(weights)['class_weights'],
                               report['median_frequency_weights'])
    assert 'void (not scored)' in page and '32 x 24' in page and '20 x 30' in page
    seen = page_in_browser(page_path, tmp_path, '#gallery .pair')
    assert seen['rows'] == 8 and seen['broken'] == [] and seen['images'] == 16, seen
    # A new conversion to the path replaces the page with the records.
    again = run_converter('--dataset_format', 'camvid', '--data_dir', root, '--split', 'train',
                          '--output_path', out, '--config', str(config))
    assert again.returncode != 0 and 'train.record.dataset.html' in again.stderr
