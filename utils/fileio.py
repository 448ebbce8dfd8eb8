"""Atomic file writes: a file is either complete under its final name or absent.

Everything the suite writes (TFRecords, reports, configs, JPEGs) goes through here, so an
interrupted run never leaves a valid-looking partial file behind, a failed write leaves no
temporary and names the path, and files get the permissions the umask allows (as open() would).
"""
import contextlib
import errno
import glob
import os
import re
import shutil
import tempfile

from utils.errors import OutputError


def current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_remedy(error):
    """What to do about a failed write, from the error's errno (an OSError) or its text (a
    TensorFlow error): a permission problem is not cured by freeing space."""
    code = getattr(error, 'errno', None)
    text = str(error)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or re.search(
            r'[Pp]ermission denied|[Rr]ead-only file system', text):
        return 'make it writable or choose another output location'
    if code in (errno.ENOSPC, errno.EDQUOT) or re.search(r'[Nn]o space left|[Qq]uota', text):
        return 'free some space or choose another output location'
    if code in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return 'a file or folder is in the way: choose another output location'
    return 'choose another output location'


def output_error(path, error):
    """OutputError naming `path` for an OSError raised while writing it."""
    reason = error.strerror or str(error)
    return OutputError('cannot write %s (%s); %s' % (path, reason, write_remedy(error)))


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.',
                                        suffix='.tmp', dir=directory)
    except OSError as e:
        raise output_error(path, e) from None
    os.close(fd)
    try:
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp's 0600 would ignore the umask
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp_path)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise output_error(path, e) from None
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
