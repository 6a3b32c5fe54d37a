"""Reading and writing experiment files on a local path, a shared mount or an object store.

Everything goes through ``pyarrow.fs`` so that ``s3://``/``gs://`` storage works the same
way as a local directory. Local writes are atomic: a temporary file in the same directory,
then a rename, so a crash mid-write leaves the previous file intact. An object store's
single upload is already all-or-nothing.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from qatsweep.errors import ResultsError


class Location:
    """A directory on some filesystem, addressed by a local path or a URI."""

    def __init__(self, where: str | Path) -> None:
        text = str(where)
        self.uri = text
        try:
            if "://" in text:
                self.fs, self.path = pafs.FileSystem.from_uri(text)
            else:
                self.fs, self.path = pafs.LocalFileSystem(), str(Path(text).resolve())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
            raise ResultsError(f"{text}: cannot open this location ({err})") from err
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def join(self, *parts: str) -> str:
        """The filesystem path of ``parts`` below this location."""
        return "/".join([self.path.rstrip("/"), *parts])

    def display(self, *parts: str) -> str:
        """The user-facing form of a path below this location."""
        if self.is_local:
            return self.join(*parts)
        return "/".join([self.uri.rstrip("/"), *parts])

    def kind(self, *parts: str) -> pafs.FileType:
        """What is at ``parts``: a file, a directory, or nothing."""
        return self.fs.get_file_info(self.join(*parts)).type

    def exists(self, *parts: str) -> bool:
        """Whether anything is at ``parts``."""
        return self.kind(*parts) != pafs.FileType.NotFound

    def is_dir(self, *parts: str) -> bool:
        """Whether ``parts`` is a directory."""
        return self.kind(*parts) == pafs.FileType.Directory

    def subdirs(self) -> list[str]:
        """Names of the directories directly below this location, sorted."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def read_bytes(self, *parts: str) -> bytes:
        """The content of the file at ``parts``."""
        with self.fs.open_input_stream(self.join(*parts)) as stream:
            return stream.read()

    def read_text(self, *parts: str) -> str:
        """The file at ``parts`` as UTF-8 text (undecodable bytes replaced)."""
        return self.read_bytes(*parts).decode("utf-8", errors="replace")

    def write_files(self, files: dict[str, bytes]) -> list[str]:
        """Write several files so that either all are replaced or none is.

        Every file goes to a temporary name first; only when all are written are they
        renamed into place. (On an object store each upload is all-or-nothing by itself.)

        Raises:
            ResultsError: a file cannot be written there; no target file was replaced.
        """
        if not self.is_local:
            return [self.write_bytes(data, name) for name, data in files.items()]
        staged: list[tuple[str, str]] = []
        try:
            for name, data in files.items():
                target = self.join(name)
                if os.path.isdir(target):
                    raise IsADirectoryError(21, "Is a directory", target)
                staged.append((self._stage(data, target), target))
            for temporary, target in staged:
                os.replace(temporary, target)
        except OSError as err:
            raise ResultsError(
                f"cannot write {err.filename or self.display()}: {err.strerror or err}"
            ) from err
        finally:
            for temporary, _ in staged:
                if os.path.exists(temporary):
                    os.unlink(temporary)
        return [self.display(name) for name in files]

    @staticmethod
    def _stage(data: bytes, target: str) -> str:
        """Write ``data`` next to ``target`` under a temporary name; return that name."""
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        temporary = os.path.join(directory, f".{os.path.basename(target)}.{uuid.uuid4().hex}")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return temporary

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """Write ``data`` atomically and return the user-facing path.

        Raises:
            ResultsError: the file cannot be written there.
        """
        try:
            return self._write_bytes(data, *parts)
        except OSError as err:
            reason = err.strerror or str(err)
            raise ResultsError(f"cannot write {self.display(*parts)}: {reason}") from err

    def _write_bytes(self, data: bytes, *parts: str) -> str:
        target = self.join(*parts)
        if not self.is_local:
            with self.fs.open_output_stream(target) as stream:
                stream.write(data)
            return self.display(*parts)

        temporary = self._stage(data, target)
        try:
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return self.display(*parts)
