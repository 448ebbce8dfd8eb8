"""The one pixel limit of every image decoder (converter, records, evaluation, prediction).

A small compressed file can hold a huge image (a 243 KB PNG of 15000x15000 pixels decodes to
675 MB, and every float copy after it is four times that), so each decoder reads the image's
size from its header first and refuses an image above the limit, naming it:

    size = header_size(encoded_bytes)                 # (height, width) or None
    check_pixels(size, 'photo.png', max_pixels)      # raises ImageTooLarge

Scripts that decode images take the limit as PIXELS_FLAG (utils.cli.non_negative_int, 0: none).
"""
import io

from PIL import Image

from utils.errors import DataError

# 2^27 = 134 million pixels: a 12000x9000 photo (108 MP, 324 MB as RGB) passes; 15000x15000
# (225 MP) does not. Decoding at the limit takes 0.4 GB and prediction by tiles stays within
# about 3 GB, which a 2-core 24 GB machine holds with room for the rest.
MAX_IMAGE_PIXELS = 2 ** 27
PIXELS_FLAG = '--max_image_pixels'

# PIL's own guard (a DecompressionBombError with a traceback at twice its default) yields to
# ours: sizes are read from headers before any decoding.
Image.MAX_IMAGE_PIXELS = None


class ImageTooLarge(DataError):
    """An image whose height x width exceeds the pixel limit."""


def header_size(data):
    """(height, width) from an encoded image's header (bytes or a path), without decoding the
    pixels; None when PIL cannot read the header (the decoder then says why)."""
    try:
        source = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        with Image.open(source) as im:
            return im.size[1], im.size[0]
    except Exception:  # not an image PIL knows: the real decoder reports it
        return None


def check_pixels(size, name, max_pixels=MAX_IMAGE_PIXELS):
    """Raises ImageTooLarge naming `name` when `size` (height, width) exceeds `max_pixels`
    (0: no limit); `size` None passes."""
    if not size or not max_pixels:
        return
    height, width = size
    if height * width > max_pixels:
        raise ImageTooLarge('%s is %dx%d = %s pixels, above the limit of %s (%s %d); raise %s '
                            'if this machine has the memory, or resize it'
                            % (name, width, height, _count(height * width), _count(max_pixels),
                               PIXELS_FLAG, max_pixels, PIXELS_FLAG))


def _count(pixels):
    """'225 million' for large counts, '1600' for small ones."""
    return '%.0f million' % (pixels / 1e6) if pixels >= 10 ** 7 else '%d' % pixels

