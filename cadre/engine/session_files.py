"""A session's files: its working directory, a fork's copy of it, and its archive.

Working directories live at ``data_dir/sessions/<session id>`` (mode 0700), archives at
``data_dir/session-archives/<session id>/<archive id>.tar.gz``. Copying and archiving
walk the disk: callers run them off the event loop (``anyio.to_thread``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

from cadre.engine.tools.workspace import quota_refusal, workspace_size

ARCHIVE_MEMBER = "session.json"


def working_directory(data_dir: Path, session_id: str) -> Path:
    return Path(data_dir).resolve() / "sessions" / session_id


def archive_directory(data_dir: Path, session_id: str) -> Path:
    return Path(data_dir).resolve() / "session-archives" / session_id


def create_working_directory(data_dir: Path, session_id: str) -> Path:
    path = working_directory(data_dir, session_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.mkdir(mode=0o700)
    return path


def copy_working_directory(source: Path, target: Path, quota_bytes: int | None) -> None:
    """``source``'s files into the new ``target`` (symlinks copied as links, never
    followed); refused before anything is copied when ``source`` is over the quota."""
    if quota_bytes is not None and workspace_size(source, quota_bytes) > quota_bytes:
        raise quota_refusal(quota_bytes, "The session's working directory is over its quota.")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
        os.chmod(target, 0o700)
    else:  # its directory was removed by hand: the fork starts empty
        target.mkdir(mode=0o700)


def write_archive(working: Path, target: Path, session_document: dict[str, Any]) -> tuple[int, int]:
    """A gzipped tar of the working directory (under ``workspace/``) and ``session.json``;
    returns (size in bytes, files archived). Symlinks are stored as links."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    files = 0
    with tarfile.open(partial, "w:gz") as archive:
        data = json.dumps(session_document, indent=2, default=str).encode()
        member = tarfile.TarInfo(ARCHIVE_MEMBER)
        member.size = len(data)
        member.mode = 0o600
        archive.addfile(member, io.BytesIO(data))
        files += 1
        if working.is_dir():
            for root, dirs, names in os.walk(working):
                dirs.sort()
                for name in sorted(names):
                    path = Path(root) / name
                    if path.is_symlink() or path.is_file():
                        archive.add(path, arcname=f"workspace/{path.relative_to(working)}")
                        files += 1
    os.replace(partial, target)
    return target.stat().st_size, files


def remove(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
