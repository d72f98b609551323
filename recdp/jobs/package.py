"""The archive of the `recdp` package that spark-submit ships to the cluster with --py-files.

Executors import the project from this archive only, so a cluster needs no checkout and no shared folder
layout: the job's code travels with the job. The archive is named by a hash of its content, so building it
again for the same code is a no-op, and runs on different code never overwrite each other's archive.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import zipfile
from pathlib import Path

import recdp

PACKAGE_ROOT = Path(recdp.__file__).resolve().parent
# A fixed timestamp, so that the same sources give the same bytes.
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def package_sources(root: Path = PACKAGE_ROOT) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def job_archive(directory: Path, root: Path = PACKAGE_ROOT) -> Path:
    """Build (once per content) directory/recdp-<hash>.zip holding the package's sources."""
    sources = package_sources(root)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    target = directory / f"recdp-{digest.hexdigest()[:16]}.zip"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    pending = directory / f".{target.name}.{uuid.uuid4().hex[:8]}"
    try:
        with zipfile.ZipFile(pending, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sources:
                info = zipfile.ZipInfo(path.relative_to(root.parent).as_posix(), date_time=ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
        os.replace(pending, target)
    finally:
        pending.unlink(missing_ok=True)
    return target
