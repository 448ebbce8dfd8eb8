"""The errors a job reports to its user as one line (`error: ...`, exit status 1).

Each names the file, flag or value at fault and says what to do. Anything else that escapes a
job is a bug and keeps its traceback.
"""


class JobError(Exception):
    """Base of the user-facing errors; scripts catch this (and OSError) in one place."""


class ConfigError(JobError, ValueError):
    """A configuration value or file is wrong."""


class CheckpointError(JobError, ValueError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class DataError(JobError, ValueError):
    """Input data cannot be used: TFRecords that are empty, unreadable, of another schema or
    class count; a dataset whose pairs are all unusable; a malformed list file."""


class OutputError(JobError, OSError):
    """A file or folder cannot be written (full disk, read-only, a file in the way)."""


class TrainingError(JobError, RuntimeError):
    """The run cannot go on (non-finite loss, unwritable checkpoint, ...)."""
