"""Report directories: which ``--out`` is safe to write, and replacing one atomically.

Every initlab report (``initlab demo``'s :mod:`initlab.report`, ``initlab phase``'s
:mod:`initlab.report.phase_report`) is a directory described by a :class:`ReportLayout`: the files
it writes, a ``figures/`` directory of PNG files and a marker file naming the schema. The rules,
the same for every report:

* Allowed ``out``: a missing path in a writable directory, an empty directory, a report of the
  same layout and nothing else (:func:`is_report_dir`; it is replaced), or, only with
  ``force=True``, any other directory, whose contents are then kept in :func:`backup_path`
  (``<out>.backup-YYYYmmdd-HHMMSS``), never deleted.
* Never allowed: the current directory or one that contains it (``.``, ``..``, ``/``), an existing
  top-level directory (``/usr``), the home directory or one that contains it, a mount point, a
  file, a symbolic link.
* Writing (:func:`replace_dir`) builds the report in ``.<out>.tmp-<id>`` next to ``out`` and renames
  it into place, so an interruption (Ctrl-C; ``kill`` under the CLI, which turns SIGTERM into a
  ``KeyboardInterrupt`` subclass and exits 143) never leaves half a report over a good one, nor a
  temporary directory.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from initlab.errors import InitlabError

__all__ = ["ReportLayout", "foreign_entries", "is_report_dir", "check_out_dir", "backup_path", "replace_dir"]

#: Files that file browsers drop into any folder they show; not user data.
OS_METADATA = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class ReportLayout:
    """What one kind of report directory holds.

    Attributes:
        schema: the schema name written to ``results.json`` and the marker (``"initlab.report"``).
        version: the schema version written to the marker.
        marker: the marker file's name (``".initlab-report"``); it holds ``"<schema> <version>"``.
        files: the plain files the report writes besides the marker.
        figures: the name of its directory of PNG files.
        label: what the messages call it (``"initlab report"``).
        example: a directory name the messages suggest (``"initlab-report"``).
        command: the command named in messages (``"initlab demo"``).

    >>> ReportLayout("x.report", 1, ".x-report", ("index.html",)).entries
    ('index.html', '.x-report', 'figures')
    """

    schema: str
    version: int
    marker: str
    files: tuple[str, ...]
    figures: str = "figures"
    label: str = "initlab report"
    example: str = "initlab-report"
    command: str = "initlab"

    @property
    def entries(self) -> tuple[str, ...]:
        """Every top-level name the report writes: ``files``, ``marker``, ``figures``."""
        return (*self.files, self.marker, self.figures)


def foreign_entries(path: str | Path, layout: ReportLayout) -> list[str]:
    """Entries of directory ``path`` that a report of ``layout`` does not write (sorted; names
    inside the figures directory are given as ``figures/NAME``). Symbolic links always count as
    foreign; file-browser metadata (``.DS_Store``, ``Thumbs.db``, ``desktop.ini``) never does.

    >>> foreign_entries("/nonexistent-initlab-dir", ReportLayout("s", 1, ".m", ()))
    []
    """
    path = Path(path)
    if not path.is_dir():
        return []
    out = []
    for entry in path.iterdir():
        if entry.name in OS_METADATA and entry.is_file() and not entry.is_symlink():
            continue
        if entry.is_symlink() or entry.name not in layout.entries:
            out.append(entry.name)
        elif entry.name == layout.figures:
            if not entry.is_dir():
                out.append(entry.name)
                continue
            out += [f"{entry.name}/{f.name}" for f in entry.iterdir() if f.is_symlink() or not f.is_file()
                    or (f.suffix != ".png" and f.name not in OS_METADATA)]
        elif not entry.is_file():
            out.append(entry.name)
    return sorted(out)


def is_report_dir(path: str | Path, layout: ReportLayout) -> bool:
    """Whether ``path`` is a directory that holds a report of ``layout`` and nothing else: its
    marker file is there and every entry is one the report writes (:func:`foreign_entries` is
    empty). Only such a directory is replaced without ``force``.

    >>> is_report_dir("/nonexistent-initlab-dir", ReportLayout("s", 1, ".m", ()))
    False
    """
    path = Path(path)
    if path.is_symlink() or not path.is_dir() or not (path / layout.marker).is_file():
        return False
    return not foreign_entries(path, layout)


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_out_dir(out: str | Path, layout: ReportLayout, *, force: bool = False) -> Path:
    """Check that a report of ``layout`` may be written to ``out`` and return it as a ``Path``;
    nothing is created or changed. The rules are in the module docstring.

    Raises:
        FileExistsError: ``out`` is a non-empty directory that is not a report of ``layout`` and
            ``force`` is false (for a report that also holds other files, the message names
            them), or ``out`` is a file or a symbolic link (even with ``force``).
        InitlabError: ``out`` is the current directory or contains it, a top-level or home
            directory, or a mount point (even with ``force``).
        NotADirectoryError: a parent of ``out`` is a file.
        PermissionError: the directory that would hold ``out`` is not writable.

    >>> check_out_dir("/nonexistent-initlab-dir", ReportLayout("s", 1, ".m", ())).name
    'nonexistent-initlab-dir'
    """
    out = Path(out)
    shown = str(out)
    target = Path(os.path.abspath(out))
    cwd = Path.cwd()
    for here in {cwd, cwd.resolve()}:
        if target == here or target in here.parents or (
                os.path.lexists(target) and target.resolve() in (here, *here.parents)):
            raise InitlabError(f"--out {shown!r} is the current directory or contains it: the report "
                               f"directory is replaced as a whole, so choose a new directory, e.g. "
                               f"--out {layout.example}")
    home = Path.home()
    if os.path.lexists(target) and (len(target.parts) <= 2 or target == home or target in home.parents
                                    or os.path.ismount(target)):
        raise InitlabError(f"--out {shown!r} is a system or home directory (or a mount point): choose a new "
                           f"directory for the report, e.g. --out {layout.example}")
    if os.path.lexists(target):
        if target.is_symlink() or not target.is_dir():
            kind = "a symbolic link" if target.is_symlink() else "a file"
            raise FileExistsError(f"--out {shown!r} is {kind}, not a directory: remove it or choose another "
                                  "--out (--force never replaces a file)")
        foreign = foreign_entries(target, layout)
        if foreign and (target / layout.marker).is_file() and not force:
            listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise FileExistsError(f"--out {shown!r} is an {layout.label} but also holds files initlab did "
                                  f"not write ({listed}): move them, choose another --out, or pass --force "
                                  "(the old directory is then kept as a backup beside it)")
        if not force and any(target.iterdir()) and not is_report_dir(target, layout):
            raise FileExistsError(f"--out {shown!r} is a non-empty directory that is not an {layout.label}: "
                                  "choose another --out, or pass --force (its contents are then kept as a "
                                  "backup beside it)")
    existing = _nearest_existing(target.parent)
    if not existing.is_dir():
        raise NotADirectoryError(f"--out {shown!r}: {str(existing)!r} is not a directory: choose --out in a "
                                 "directory")
    _probe_writable(existing, shown)
    return out


def _probe_writable(directory: Path, shown: str) -> None:
    """Create and remove an empty directory in ``directory`` (``os.access`` is wrong for root and
    read-only mounts)."""
    try:
        probe = tempfile.mkdtemp(prefix=".initlab-probe-", dir=directory)
    except OSError as exc:
        raise PermissionError(f"--out {shown!r}: directory {str(directory)!r} is not writable "
                              f"({exc.strerror or exc}): choose --out in a writable directory") from None
    os.rmdir(probe)


def backup_path(out: str | Path) -> Path:
    """A new sibling path for the old contents of ``out``: ``<out>.backup-YYYYmmdd-HHMMSS`` (with
    ``-2``, ``-3``, ... when taken).

    >>> backup_path("/tmp/x").name.startswith("x.backup-")
    True
    """
    out = Path(os.path.abspath(out))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = out.with_name(f"{out.name}.backup-{stamp}")
    k = 2
    while os.path.lexists(candidate):
        candidate = out.with_name(f"{out.name}.backup-{stamp}-{k}")
        k += 1
    return candidate


def replace_dir(out: str | Path, layout: ReportLayout, fill: Callable[[Path], None], *, force: bool = False,
                notify: Callable[[str], None] | None = None) -> Path:
    """Write a report of ``layout`` to directory ``out`` atomically: check ``out``
    (:func:`check_out_dir`), call ``fill(tmp)`` to write the report's files into a new temporary
    directory ``.<out>.tmp-<id>`` next to ``out``, write the marker file, and rename it into place.

    An existing ``out``:

    * an empty directory or a report of ``layout`` (:func:`is_report_dir`) is renamed to
      ``.<out>.old-<id>`` and deleted once the new report is in place (renamed back if that fails);
    * any other directory (only with ``force=True``) is renamed to :func:`backup_path` and kept:
      nothing a user had is deleted. ``notify(message)`` is called with its location (default: a
      ``UserWarning``).

    If ``fill`` raises (or the process gets ``KeyboardInterrupt``), ``out`` is left as it was and
    the temporary directory is removed.

    Raises:
        FileExistsError, InitlabError, NotADirectoryError, PermissionError: see
            :func:`check_out_dir`; and whatever ``fill`` raises.

    Returns:
        ``out`` as a ``Path``.

    >>> layout = ReportLayout("demo.schema", 1, ".demo-marker", ("a.txt",))
    >>> out = replace_dir("/tmp/initlab-outdir-doctest", layout,
    ...                   lambda d: (d / "a.txt").write_text("hi"))  # doctest: +SKIP
    >>> is_report_dir(out, layout)  # doctest: +SKIP
    True
    """
    out = check_out_dir(out, layout, force=force)
    target = Path(os.path.abspath(out))
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = parent / f".{target.name}.tmp-{tag}"
    keep = os.path.lexists(target) and not is_report_dir(target, layout) and any(target.iterdir())
    old = backup_path(target) if keep else parent / f".{target.name}.old-{tag}"
    tmp.mkdir()
    try:
        fill(tmp)
        (tmp / layout.marker).write_text(f"{layout.schema} {layout.version}\n", encoding="utf-8")
        if os.path.lexists(target):
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            if keep:
                message = f"{layout.command}: kept the previous contents of {out} in {old}"
                if notify is None:
                    import warnings

                    warnings.warn(message, UserWarning, stacklevel=3)
                else:
                    notify(message)
            else:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
