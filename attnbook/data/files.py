"""Finding and verifying the real data files in the directory named by ``ATTNBOOK_DATA`` (every chapter with data).

The book never ships those files. A loader asks `find_data` for a file with its SHA-256: it gets the path if the
file is there and intact, ``None`` if it is absent (the loader then falls back to generated data and says so),
and a `DataFileError` naming the file and what to do if the file is there but corrupt.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ENV_VAR = "ATTNBOOK_DATA"


class DataFileError(RuntimeError):
    """A data file exists but cannot be used (corrupt, wrong version, malformed)."""


def data_root() -> Path | None:
    """The directory named by ``ATTNBOOK_DATA``, or None when the variable is unset or empty."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, sha256: str) -> Path:
    """Return ``path`` if its SHA-256 is ``sha256``; else raise `DataFileError` saying what to do."""
    actual = sha256_of(path)
    if actual != sha256:
        raise DataFileError(
            f"{path}: SHA-256 is {actual}, expected {sha256}. The file is corrupt or a different version: "
            f"replace it with the file listed in the data README, or unset {ENV_VAR} to use generated data."
        )
    return path


def find_data(relative: str, sha256: str | None = None) -> Path | None:
    """Path of ``$ATTNBOOK_DATA/relative`` after checking its SHA-256, or None if it is not there."""
    root = data_root()
    if root is None:
        return None
    path = root / relative
    if not path.is_file():
        return None
    return verify(path, sha256) if sha256 else path


def describe_source(name: str, path: Path | None, fallback: str) -> str:
    """One line for the chapter's output saying which data ran: the real file, or the generated fallback."""
    if path is not None:
        return f"data: {name} (real), read from {path.name} in ${ENV_VAR}"
    hint = "" if data_root() else f"; set {ENV_VAR} to the data directory to use the real set"
    return f"data: {fallback} (generated offline; real {name} not found{hint})"
