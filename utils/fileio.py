"""Atomic file writes: a file is either complete under its final name or absent.

Everything the suite writes (TFRecords, reports, configs, JPEGs) goes through here, so an
interrupted run never leaves a valid-looking partial file behind.
"""
import contextlib
import glob
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp',
                                    dir=directory)
    os.close(fd)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp_path)
        raise


def atomic_write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    with atomic_path(path) as tmp_path:
        with open(tmp_path, 'wb') as f:
            f.write(data)


def atomic_write_text(path, text):
    """Writes `text` (str, UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode('utf-8'))


def remove_stale_temporaries(path):
    """Removes temporaries of `path` left by a killed writer; returns how many."""
    directory = os.path.dirname(os.path.abspath(path))
    stale = glob.glob(os.path.join(directory, '.' + glob.escape(os.path.basename(path)) + '*.tmp'))
    for tmp_path in stale:
        if os.path.isdir(tmp_path):
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(tmp_path)
    return len(stale)
