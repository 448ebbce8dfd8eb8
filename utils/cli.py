"""What every top-level job shares: comma-list values, and one way to end with an error.

    def main(argv=None):
        args = parse_args(argv)
        return run_job(lambda: work(args))
"""
import argparse
import os
import sys

from utils.errors import ConfigError, JobError


def job_parser(doc):
    """The argument parser of a job whose module docstring is `doc`: its first line describes
    the job, and a flag must be written in full (`--max_step` is not taken for
    `--max_steps`)."""
    return argparse.ArgumentParser(description=doc.split('\n')[0], allow_abbrev=False)


def add_run_flags(parser, run_dir_to=None):
    """--run_dir, --checkpoint and --latest, the flags of every job that reads a training run
    (utils.rundir.load_run); --run_dir goes to `run_dir_to` (e.g. a mutually exclusive group
    of other sources) when given, else it is required."""
    if run_dir_to is None:
        parser.add_argument('--run_dir', required=True, help='a training --output_dir')
    else:
        run_dir_to.add_argument('--run_dir', help='a training --output_dir')
    parser.add_argument('--checkpoint', help='checkpoint prefix (default: the run\'s best by '
                        'validation mIoU, else its latest)')
    parser.add_argument('--latest', action='store_true',
                        help='use the run\'s latest checkpoint, not its best')


def split_list(text, separator=','):
    """'a, b,,c' -> ['a', 'b', 'c']: items stripped, blank ones dropped."""
    return [item.strip() for item in text.split(separator) if item.strip()]


def list_of(item_type, count=None, minimum=None, example='1,2'):
    """An argparse `type` for comma lists: 'A,B' -> a tuple of `item_type`.

    `count` fixes the number of items and `minimum` bounds each; a bad value is an argparse
    error that shows the value and an `example`.
    """
    def parse(text):
        try:
            values = tuple(item_type(item) for item in split_list(text))
        except ValueError:
            values = None
        if (not values or (count is not None and len(values) != count)
                or (minimum is not None and min(values) < minimum)):
            what = '%d ' % count if count else ''
            bound = ', each >= %s' % minimum if minimum is not None else ''
            raise argparse.ArgumentTypeError('%r is not %scomma-separated %s values%s, e.g. %s'
                                             % (text, what, item_type.__name__, bound, example))
        return values
    return parse


def image_size(minimum, max_pixels, example='320,480'):
    """An argparse `type`: 'HEIGHT,WIDTH', both >= `minimum`, at most `max_pixels` in all (the
    pixel limit of every decoder: a size beyond it would build tensors of many GB)."""
    pair = list_of(int, count=2, minimum=minimum, example=example)

    def parse(text):
        height, width = pair(text)
        if height * width > max_pixels:
            raise argparse.ArgumentTypeError(
                '%r is %d million pixels, above the pixel limit of %d million: '
                'give a smaller size' % (text, height * width // 10 ** 6, max_pixels // 10 ** 6))
        return height, width
    return parse


def int_at_least(minimum):
    """An argparse `type`: an int >= `minimum`; anything else is an argparse error."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError('%r is not an integer >= %d' % (text, minimum))
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def non_negative_float(text):
    """An argparse `type`: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float('inf'):
        raise argparse.ArgumentTypeError('%r is not a number >= 0' % text)
    return value



def probability(text):
    """An argparse `type`: a float in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError('%r is not a probability in (0, 1]' % text)
    return value

def output_folder(path, flag):
    """Makes the output folder `path` of flag `flag`, or raises ConfigError saying why it
    cannot be one (a file is in the way, no permission to write)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError('%s %s is a file; give a folder' % (flag, path))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigError('%s %s cannot be created (%s)' % (flag, path, e.strerror)) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError('%s %s is not writable; choose another folder' % (flag, path))
    return path


def run_job(work):
    """Runs `work()` and returns the job's exit status.

    A JobError or an OSError (missing file, full disk, ...) ends the job with its one-line
    message on stderr and status 1; Ctrl-C with 130. `work` returns the status (None: 0).
    """
    try:
        status = work()
    except (JobError, OSError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    return 0 if status is None else status
