"""The results store of a sweep: one Parquet file per finished cell, written atomically, in a
directory that says what it holds.

Layout of a sweep directory::

    initlab-sweep.json     manifest: {"schema": "initlab.sweep", "schema_version", "spec_hash",
                           "experiment", "axes", "n_cells", "initlab_version", "versions",
                           "created_utc", "spec"}
    cells/<key>.parquet    the tidy records of one finished cell (key = its config's SHA-256),
                           the cell's key, params, config and run facts in the file's metadata
    failed/<key>.parquet   a cell that failed twice: its error (removed once it succeeds)
    report/                what ``initlab sweep report`` writes
    .lock                  held (``flock``) while a sweep writes here

Why Parquet files and not DuckDB: a file per cell is published by one ``rename``, so a cell is
either wholly there or absent whatever kills the process, and the file name is the key, so no cell
can be stored twice; nothing holds a database lock, so ``initlab sweep show`` and pandas, polars
or DuckDB (``read_parquet('DIR/cells/*.parquet')``) read a sweep while it runs. A directory
without the manifest, with another spec's manifest, with files it did not write or with an
unreadable cell file is refused with one line and never written to.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from initlab.errors import InitlabError
from initlab.records import RECORD_FIELDS, jsonable

__all__ = ["SCHEMA", "SCHEMA_VERSION", "MANIFEST", "SweepStore", "CellInfo", "Failure", "normalize_records"]

SCHEMA = "initlab.sweep"
SCHEMA_VERSION = 1
MANIFEST = "initlab-sweep.json"
_ENTRIES = {MANIFEST, "cells", "failed", "report", ".lock"}
_CELL_FILE = re.compile(r"^[0-9a-f]{64}\.parquet$")
_META_KEY = b"initlab.sweep.cell"


@dataclass(frozen=True)
class CellInfo:
    """A stored cell: its ``key``, ``params`` (the varying spec values), ``config`` (all fields) and
    ``run`` facts (``seconds``, ``started``, ``ended``, ``host``, ``pid``, ``finished_utc``)."""

    key: str
    params: dict[str, Any]
    config: dict[str, Any]
    run: dict[str, Any]


@dataclass(frozen=True)
class Failure:
    """A cell that failed (after its retry): ``key``, ``params`` and the ``error`` line."""

    key: str
    params: dict[str, Any]
    error: str


def _scalar(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(jsonable(value), sort_keys=True)


def normalize_records(records: Iterable[Mapping[str, Any]], extra: Mapping[str, Any] | None = None
                      ) -> list[dict[str, Any]]:
    """Records as the store keeps them: the standard fields first (``value`` and ``epoch`` floats,
    ``layer`` a string, ``seed`` an int; ``None`` stays ``None``, NaN stays NaN), then extras as
    single values (lists and objects as JSON text), then ``extra`` for keys a record lacks.

    >>> normalize_records([{"stat": "std", "value": 1, "layer": 0, "shape": (2, 3)}], {"cell": "ab"})[0]
    ... # doctest: +NORMALIZE_WHITESPACE
    {'experiment': None, 'scheme': None, 'activation': None, 'layer': '0', 'stat': 'std', 'value': 1.0,
     'epoch': None, 'seed': None, 'shape': '[2, 3]', 'cell': 'ab'}
    """
    out = []
    for r in records:
        rec = {k: _scalar(r.get(k)) for k in RECORD_FIELDS}
        for k in ("value", "epoch"):
            rec[k] = None if rec[k] is None else float(rec[k])
        rec["layer"] = None if rec["layer"] is None else str(rec["layer"])
        rec["seed"] = None if rec["seed"] is None else int(rec["seed"])
        rec.update({k: _scalar(v) for k, v in r.items() if k not in RECORD_FIELDS})
        for k, v in (extra or {}).items():
            rec.setdefault(k, _scalar(v))
        out.append(rec)
    return out


def _column(values: list[Any]):
    """One Arrow column: bool, int64, float64 (ints with floats), string (anything mixed), or null."""
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.array(values, pa.null())
    if kinds == {bool}:
        return pa.array(values, pa.bool_())
    if kinds == {int}:
        return pa.array(values, pa.int64())
    if kinds <= {int, float}:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def _table(records: list[dict[str, Any]], meta: Mapping[str, Any]):
    import pyarrow as pa

    names: list[str] = []
    for r in records:
        names += [k for k in r if k not in names]
    columns = {n: _column([r.get(n) for r in records]) for n in names}
    return pa.table(columns).replace_schema_metadata({_META_KEY: json.dumps(jsonable(meta)).encode()})


def _concat(tables: list):
    """Tables with different extras as one: missing columns null, ints with floats as floats, any
    other clash as strings."""
    import pyarrow as pa

    types: dict[str, set] = {}
    for t in tables:
        for f in t.schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    def numeric(t) -> bool:
        return pa.types.is_integer(t) or pa.types.is_floating(t)

    clash = {n for n, ts in types.items() if len(ts) > 1 and not all(numeric(t) for t in ts)}
    fixed = []
    for t in tables:
        for n in clash & set(t.column_names):
            t = t.set_column(t.schema.get_field_index(n), n, t.column(n).cast(pa.string()))
        fixed.append(t)
    return pa.concat_tables(fixed, promote_options="permissive")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not POSIX
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_atomic(table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary file, ``fsync`` and a rename."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


class SweepStore:
    """A sweep directory (module docstring). Open it with :meth:`create` (to run a sweep into it)
    or :meth:`open` (to read it); both refuse a directory that is not a sweep of the expected kind.
    """

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest
        self._lock_fd: int | None = None

    # ---- opening -------------------------------------------------------------------------------

    @staticmethod
    def _read_manifest(root: Path) -> dict[str, Any]:
        path = root / MANIFEST
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InitlabError(f"{root}: {MANIFEST} is corrupt ({type(exc).__name__}): this is not a sweep "
                               "initlab can read; it is left as it is: choose another directory") from None
        if not (isinstance(doc, dict) and doc.get("schema") == SCHEMA
                and isinstance(doc.get("spec_hash"), str)):
            raise InitlabError(f"{root}: {MANIFEST} is not an initlab sweep manifest: the directory is left "
                               "as it is: choose another directory")
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise InitlabError(f"{root} is a sweep of store version {doc.get('schema_version')!r}; this "
                               f"initlab reads version {SCHEMA_VERSION}: use the initlab that wrote it")
        return doc

    @staticmethod
    def _check_entries(root: Path) -> None:
        foreign = sorted(e.name for e in root.iterdir() if e.name not in _ENTRIES or e.is_symlink())
        for sub in ("cells", "failed"):
            d = root / sub
            if d.is_symlink() or (d.exists() and not d.is_dir()):
                foreign.append(sub)
            elif d.is_dir():
                foreign += [f"{sub}/{f.name}" for f in d.iterdir()
                            if not (_CELL_FILE.match(f.name) or f.name.startswith(".")) or not f.is_file()]
        if foreign:
            listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise InitlabError(f"{root} holds files an initlab sweep does not write ({listed}): it is left "
                               "as it is: move them away or choose another directory")

    @classmethod
    def open(cls, root: str | Path) -> SweepStore:
        """Open an existing sweep directory to read it.

        Raises:
            FileNotFoundError: no such directory.
            InitlabError: not a sweep directory, a corrupt manifest or cell file, foreign files.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a directory: pass the sweep's results directory")
        if not (root / MANIFEST).is_file():
            raise InitlabError(f"{root} is not an initlab sweep directory (no {MANIFEST}): pass the "
                               "directory `initlab sweep SPEC.toml` wrote")
        store = cls(root, cls._read_manifest(root))
        cls._check_entries(root)
        store.cells()  # every cell file readable, named by its key
        store.failures()
        return store

    @classmethod
    def check(cls, root: str | Path, manifest: dict[str, Any]) -> SweepStore | None:
        """Whether the sweep that ``manifest`` describes may run into ``root``, without writing
        anything: the existing sweep if ``root`` holds it, ``None`` if ``root`` is missing or empty
        (:meth:`create` makes it). ``initlab sweep`` checks before it starts Ray and creates after,
        so a Ray that cannot start leaves no directory behind.

        Raises:
            InitlabError: ``root`` is a file or lies under one, a non-empty directory that is not a
                sweep, a sweep
                of another spec (or initlab/torch version), or holds foreign or corrupt files.
        """
        root = Path(root)
        if root.is_symlink() or (root.exists() and not root.is_dir()):
            raise InitlabError(f"--out {root} is not a directory: choose a new or empty directory for the "
                               "sweep's results")
        above = root.parent
        while not os.path.lexists(above) and above != above.parent:
            above = above.parent
        if not above.is_dir():
            raise InitlabError(f"--out {root}: {above} is a file, not a directory: choose --out in a "
                               "directory")
        if not (root.is_dir() and any(root.iterdir())):
            return None
        if not (root / MANIFEST).is_file():
            raise InitlabError(f"--out {root} is a non-empty directory that is not an initlab sweep (no "
                               f"{MANIFEST}): it is left as it is: choose a new or empty --out")
        store = cls.open(root)
        if store.manifest["spec_hash"] != manifest["spec_hash"]:
            old = store.manifest
            was = old.get("versions", {})
            raise InitlabError(
                f"{root} holds another sweep (spec {old['spec_hash'][:12]}, {old.get('n_cells')} cells, "
                f"initlab {was.get('initlab')}, torch {was.get('torch')}; this one: spec "
                f"{manifest['spec_hash'][:12]}, {manifest['n_cells']} cells): it is left as it is: "
                "choose another --out for this spec")
        return store

    @classmethod
    def create(cls, root: str | Path, manifest: dict[str, Any]) -> SweepStore:
        """Open ``root`` to run the sweep that ``manifest`` describes into it, creating it if it is
        missing or empty (:meth:`check`), and lock it (``flock``) against a second writer.

        Raises:
            InitlabError: as :meth:`check`, or ``root`` is locked by another running sweep.
        """
        import pyarrow.parquet  # noqa: F401 - imported now, not on the first finished cell

        root = Path(root)
        store = cls.check(root, manifest)
        if store is None:
            root.mkdir(parents=True, exist_ok=True)
            store = cls(root, dict(manifest))
            tmp = root / f".{MANIFEST}.tmp"
            tmp.write_text(json.dumps(jsonable(manifest), indent=1), encoding="utf-8")
            os.replace(tmp, root / MANIFEST)
        store._lock()
        for sub in ("cells", "failed"):
            (root / sub).mkdir(exist_ok=True)
            for stale in (root / sub).glob(".*.tmp-*"):  # a write that a crash cut short
                stale.unlink(missing_ok=True)
        return store

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InitlabError(f"{self.root} is being written by another running sweep: wait for it to "
                               "finish, or stop it (it resumes where it stopped)") from None
        self._lock_fd = fd

    def close(self) -> None:
        """Release the writer's lock (also released when the process ends)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- writing ---------------------------------------------------------------------------------

    def has(self, key: str) -> bool:
        """Whether cell ``key`` is stored (finished)."""
        return (self.root / "cells" / f"{key}.parquet").is_file()

    def put(self, key: str, records: list[dict[str, Any]], meta: Mapping[str, Any]) -> Path:
        """Store a finished cell's (normalized) records with ``meta`` (``params``, ``config``,
        ``run``), atomically; a failure noted for it before is removed. A stored cell is never
        written again.

        Raises:
            InitlabError: the cell has no records.
        """
        path = self.root / "cells" / f"{key}.parquet"
        if path.exists():
            return path
        if not records:
            raise InitlabError(f"cell {key[:12]} returned no records: an experiment must emit at least one")
        _write_atomic(_table(records, {"key": key, **meta}), path)
        (self.root / "failed" / f"{key}.parquet").unlink(missing_ok=True)
        return path

    def put_failure(self, key: str, params: Mapping[str, Any], error: str) -> None:
        """Note that cell ``key`` failed with ``error`` (a re-run tries it again)."""
        row = {"key": key, "params": json.dumps(jsonable(params)), "error": error,
               "failed_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        _write_atomic(_table([row], {"key": key, "params": params}), self.root / "failed" / f"{key}.parquet")

    # ---- reading ---------------------------------------------------------------------------------

    def _files(self, sub: str) -> list[Path]:
        d = self.root / sub
        return sorted(p for p in d.glob("*.parquet") if _CELL_FILE.match(p.name)) if d.is_dir() else []

    def _meta(self, path: Path) -> dict[str, Any]:
        import pyarrow.parquet as pq

        try:
            raw = (pq.read_schema(path).metadata or {}).get(_META_KEY)
            meta = json.loads(raw) if raw else None
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt store
            raise InitlabError(f"{path} is not a readable cell file ({type(exc).__name__}): the sweep is "
                               "left as it is: move that file away to run the cell again") from None
        if not isinstance(meta, dict) or meta.get("key") != path.stem:
            raise InitlabError(f"{path} does not hold cell {path.stem[:12]}: the sweep is left as it is: "
                               "move that file away to run the cell again")
        return meta

    def cells(self) -> list[CellInfo]:
        """Every stored cell (sorted by key), from the files' metadata."""
        out = []
        for path in self._files("cells"):
            meta = self._meta(path)
            out.append(CellInfo(meta["key"], meta.get("params", {}), meta.get("config", {}),
                                meta.get("run", {})))
        return out

    def failures(self) -> list[Failure]:
        """Cells that failed and are not stored."""
        import pyarrow.parquet as pq

        out = []
        for path in self._files("failed"):
            meta = self._meta(path)
            if not self.has(path.stem):
                row = pq.read_table(path).to_pylist()[0]
                out.append(Failure(meta["key"], meta.get("params", {}), row["error"]))
        return out

    def records(self) -> list[dict[str, Any]]:
        """Every stored record (cells sorted by key); NaN stays NaN, a missing extra is ``None``."""
        import pyarrow.parquet as pq

        tables = [pq.read_table(p) for p in self._files("cells")]
        if not tables:
            return []
        return _concat(tables).to_pylist()
