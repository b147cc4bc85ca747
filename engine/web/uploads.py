"""A designer's uploaded bundle (BPMN, DMN and JSON form files, or one zip of them) written to a temporary folder
that the validator and the deployer read like any folder, then removed.

Bounded: the request body by the app's limit (`Settings.max_upload_bytes`, refused with 413 before it is read),
and a zip's content by the same number of bytes once unpacked (a zip bomb stops at the limit) and by a count of
entries. Names are file names only (a zip's entries keep their folders, e.g. `forms/`): no absolute path, no
`..`, no link leaves the folder. The XML itself is parsed by the validator without loading any DTD or external
entity (an external entity is an error naming its line, never read).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from fastapi import HTTPException
from starlette.datastructures import UploadFile

from pmoflow.engine.errors import InvalidInput

KINDS = (".bpmn", ".bpmn20.xml", ".dmn", ".json")
MAX_ENTRIES = 500
CHUNK = 64 * 1024


@dataclass
class Bundle:
    """The folder holding the upload, the files in it (relative names), and a zip's entries left out."""

    folder: Path
    files: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def relative(self, finding: dict[str, Any]) -> dict[str, Any]:
        """A validator finding naming the file as uploaded, not where the server wrote it."""
        return {**finding, "file": self.name_of(finding["file"])}

    def name_of(self, path: str) -> str:
        for root in (str(self.folder.resolve()), str(self.folder)):
            if path.startswith(root + "/"):
                return path[len(root) + 1:]
        return path

    def text(self, line: str) -> str:
        """A message naming files as uploaded (the server's folder never shows)."""
        for root in (str(self.folder.resolve()), str(self.folder)):
            line = line.replace(root + "/", "").replace(root, "the upload")
        return line

    def model_folders(self) -> list[Path]:
        """The folders of the bundle holding BPMN or DMN files: what the validator and the deployer read (each
        with the forms beside it, and a modeler's process_model.json)."""
        folders = {(self.folder / name).parent for name in self.files
                   if name.lower().endswith((".bpmn", ".bpmn20.xml", ".dmn"))}
        return sorted(folders) or [self.folder]


@contextmanager
def bundle(uploads: Sequence[UploadFile], limit: int) -> Iterator[Bundle]:
    """The uploaded files written into a new temporary folder, removed on leaving."""
    if not uploads:
        raise InvalidInput("upload one or more .bpmn, .dmn or .json files, or one .zip of them (field 'files')")
    folder = Path(tempfile.mkdtemp(prefix="pmoflow-upload-"))
    try:
        made = Bundle(folder)
        zips = [u for u in uploads if (u.filename or "").lower().endswith(".zip")]
        if zips and len(uploads) > 1:
            raise InvalidInput("upload either one .zip or the files themselves, not both")
        if zips:
            _unzip(zips[0].file, made, limit)
        else:
            for upload in uploads:
                name = _file_name(upload.filename)
                if name in made.files:
                    raise InvalidInput(f"two uploaded files are named {name}")
                _copy(upload.file, folder / name, limit)
                made.files.append(name)
        if not made.files:
            raise InvalidInput("the zip holds no .bpmn, .dmn or .json file")
        yield made
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _file_name(raw: str | None) -> str:
    name = PurePosixPath((raw or "").replace("\\", "/")).name
    if not name or name.startswith("."):
        raise InvalidInput(f"an uploaded file needs a name: {raw!r:.80}")
    if not name.lower().endswith(KINDS):
        raise InvalidInput(f"{name:.120}: upload .bpmn, .dmn or .json files (forms), or one .zip of them")
    return name


def _copy(source: IO[bytes], target: Path, limit: int) -> int:
    """Copy at most `limit` bytes (413 beyond); returns how many."""
    written = 0
    with target.open("wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise HTTPException(413, f"the upload is over {limit} bytes once unpacked")
            out.write(chunk)
    return written


def _unzip(source: BinaryIO, made: Bundle, limit: int) -> None:
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError):
        raise InvalidInput("the .zip cannot be read: not a zip file, or a damaged one") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise InvalidInput(f"the zip holds {len(entries)} entries; at most {MAX_ENTRIES} are read")
        left = limit
        for entry in entries:
            name = _entry_name(entry)
            if name is None:
                continue
            if not name.lower().endswith(KINDS):
                made.ignored.append(name)
                continue
            target = made.folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(entry) as data:
                    left -= _copy(data, target, left)
            # zipfile's own refusals: a damaged entry, an encrypted one (RuntimeError), a compression method it
            # does not implement (NotImplementedError), a truncated stream (EOFError)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError) as exc:
                raise InvalidInput(f"the zip's entry {name:.120} cannot be read: {exc}") from None
            made.files.append(name)


def _entry_name(entry: zipfile.ZipInfo) -> str | None:
    """The entry's relative path, None for folders and the clutter archivers add; refused when it would leave
    the folder (absolute, `..`, a drive) or is a link."""
    raw = entry.filename.replace("\\", "/")
    if entry.is_dir() or raw.startswith("__MACOSX/"):
        return None
    path = PurePosixPath(raw)
    if path.is_absolute() or ".." in path.parts or ":" in raw or (entry.external_attr >> 16) & 0o170000 == 0o120000:
        raise InvalidInput(f"the zip's entry {raw:.120} points outside the bundle: refused")
    if any(part.startswith(".") for part in path.parts):
        return None
    return str(path)
