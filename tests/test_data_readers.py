"""Tests for the on-disk dataset readers (IDX, CIFAR-10, image folders) and the decoded-data cache."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from danlu.data import cache, cifar, idx
from danlu.data.imagefolder import decode_image, decode_images, scan_image_folder
from danlu.errors import DataError

SHARED = Path(os.environ.get("DANLU_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATASETS = SHARED / "datasets"


# ----------------------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)


def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
            np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    return header + arr.tobytes()


def write_idx_set(folder: Path, n_train=5, n_test=3, gz=True, dotted=False, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for kind, arr, nd in (("images", images, 3), ("labels", labels, 1)):
            name = f"{prefix}-{kind}-idx{nd}-ubyte"
            if dotted:
                name = f"{prefix}-{kind}.idx{nd}-ubyte"
            raw = idx_bytes(arr)
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        data[split] = (images, labels)
    return data


@pytest.mark.parametrize(
    "sub,gz,dotted,variant",
    [
        ("", True, False, "mnist"),
        ("", False, True, "mnist"),
        ("raw", True, True, "fashion-mnist"),
        ("MNIST/raw", False, False, "mnist"),
        ("FashionMNIST/raw", True, False, "fashion-mnist"),
    ],
)
def test_idx_layouts_and_names(tmp_path, sub, gz, dotted, variant):
    expected = write_idx_set(tmp_path / sub, gz=gz, dotted=dotted)
    files = idx.find_idx_files(tmp_path, variant)
    assert set(files) == {"train", "test"}
    got = idx.load_idx_dataset(tmp_path, variant)
    for split in ("train", "test"):
        images, labels = got[split]
        assert images.dtype == np.uint8 and images.shape == expected[split][0].shape
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])
        assert images.flags.writeable


def test_idx_wide_dtypes_are_native(tmp_path):
    arr = np.arange(-6, 6, dtype=">i4").reshape(3, 4)
    (tmp_path / "x.idx").write_bytes(idx_bytes(arr))
    got = idx.read_idx(tmp_path / "x.idx")
    assert got.dtype == np.dtype("=i4") and got.shape == (3, 4)
    np.testing.assert_array_equal(got, arr)
    farr = np.linspace(0, 1, 5).astype(">f8")
    (tmp_path / "f.idx.gz").write_bytes(gzip.compress(idx_bytes(farr)))
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "f.idx.gz"), farr)


def test_idx_truncated_and_corrupt(tmp_path):
    write_idx_set(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as e:
        idx.load_idx_dataset(tmp_path, "mnist")
    assert str(path) in str(e.value)

    gzpath = tmp_path / "bad.gz"
    gzpath.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 28, 28), np.uint8)))[:-30])
    with pytest.raises(DataError, match="bad.gz"):
        idx.read_idx(gzpath)

    junk = tmp_path / "junk-idx3-ubyte"
    junk.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="not an IDX file"):
        idx.read_idx(junk)
    html_gz = tmp_path / "page.gz"
    html_gz.write_bytes(b"<html>403</html>")
    with pytest.raises(DataError, match="not gzip"):
        idx.read_idx(html_gz)


def test_idx_count_mismatch(tmp_path):
    write_idx_set(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DataError, match="3 images but .* 7 labels"):
        idx.load_idx_dataset(tmp_path, "mnist")


def test_idx_missing_files_message(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError) as e:
        idx.find_idx_files(tmp_path, "fashion-mnist")
    text = str(e.value)
    assert "t10k-labels-idx1-ubyte" in text and str(tmp_path / "FashionMNIST" / "raw") in text
    assert "data.download: true" in text and "fashion-mnist.s3" in text
    with pytest.raises(DataError, match="ossci-datasets"):
        idx.find_idx_files(tmp_path / "nowhere", "mnist")
    with pytest.raises(DataError, match="unknown IDX dataset variant"):
        idx.find_idx_files(tmp_path, "kmnist")


def test_class_names():
    assert idx.MNIST_CLASSES == [str(i) for i in range(10)]
    assert idx.FASHION_MNIST_CLASSES == [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]
    assert cifar.CIFAR10_CLASSES[:3] == ["airplane", "automobile", "bird"]
    assert len(cifar.CIFAR10_CLASSES) == 10


def test_download_checks_md5(tmp_path, monkeypatch):
    payloads = {}
    src = tmp_path / "src"
    write_idx_set(src, gz=True)
    for p in src.iterdir():
        payloads[p.name] = p.read_bytes()
    fetched = []

    def fake_fetch(url, out):
        fetched.append(url)
        out.write(payloads[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(idx, "_fetch_url", fake_fetch)
    dest = tmp_path / "dest"
    # The official md5s do not match our tiny files: every mirror is tried, then a DataError, no file left.
    with pytest.raises(DataError, match="md5 mismatch"):
        idx.download_idx_dataset(dest, "mnist")
    assert fetched[0].startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") and len(fetched) == 2
    assert not any(dest.iterdir())

    md5s = {name: hashlib.md5(data).hexdigest() for name, data in payloads.items()}
    monkeypatch.setitem(idx._MD5, "mnist", md5s)
    fetched.clear()
    files = idx.download_idx_dataset(dest, "mnist")
    assert len(fetched) == 4 and files["train"][0] == dest / "train-images-idx3-ubyte.gz"
    assert sorted(p.name for p in dest.iterdir()) == sorted(payloads)  # no temp files left over
    fetched.clear()
    idx.download_idx_dataset(dest, "mnist")  # already there with the right md5: nothing fetched
    assert fetched == []


def test_download_network_error_is_data_error(tmp_path, monkeypatch):
    def broken(url, out):
        out.write(b"partial")
        raise OSError("connection reset")

    monkeypatch.setattr(idx, "_fetch_url", broken)
    with pytest.raises(DataError, match="connection reset"):
        idx.download_verified(["http://example.invalid/f"], tmp_path / "f.gz", "0" * 32)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not (DATASETS / "mnist").is_dir(), reason="shared MNIST not available")
def test_real_mnist():
    t = time.perf_counter()
    data = idx.load_idx_dataset(DATASETS / "mnist", "mnist")
    elapsed = time.perf_counter() - t
    train_x, train_y = data["train"]
    test_x, test_y = data["test"]
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert np.bincount(train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert hashlib.md5(train_x.tobytes()).hexdigest() == hashlib.md5(
        gzip.decompress((DATASETS / "mnist" / "train-images-idx3-ubyte.gz").read_bytes())[16:]
    ).hexdigest()
    assert elapsed < 5  # ~0.25 s on 2 cores; generous for loaded CI machines


def test_readers_do_not_import_torch():
    # Bypass danlu/data/__init__.py (the loader front end may import torch); only these modules are checked.
    code = (
        "import sys, types, pathlib, danlu.errors\n"
        "pkg = types.ModuleType('danlu.data')\n"
        "pkg.__path__ = [str(pathlib.Path(danlu.errors.__file__).parent / 'data')]\n"
        "sys.modules['danlu.data'] = pkg\n"
        "before = 'torch' in sys.modules\n"
        "import danlu.data.idx, danlu.data.cifar, danlu.data.imagefolder, danlu.data.cache\n"
        "print(before, 'torch' in sys.modules, 'torchvision' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    before, torch_loaded, tv_loaded = out.stdout.split()
    if before == "True":
        pytest.skip("the danlu package itself imports torch")
    assert (torch_loaded, tv_loaded) == ("False", "False")


# ----------------------------------------------------------------------------------------------------------
# CIFAR-10


def cifar_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n)


def batch_files(kind: str) -> list[str]:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return [n + ".bin" for n in names] if kind == "bin" else names


def write_cifar_bin(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True)
    out = {}
    for i, name in enumerate(batch_files("bin")):
        data, labels = cifar_arrays(3, i)
        records = np.concatenate([labels.astype(np.uint8)[:, None], data], axis=1)
        (folder / name).write_bytes(records.tobytes())
        out[name] = (data, labels)
    return out


class Py2StylePickler(pickle._Pickler):
    """Writes bytes as Python 2 str opcodes (SHORT_BINSTRING/BINSTRING), like cPickle did for CIFAR."""

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def cifar_pickle(data: np.ndarray, labels: np.ndarray, style: str) -> bytes:
    obj = {b"batch_label": b"training batch 1 of 5", b"labels": labels.tolist(), b"data": data,
           b"filenames": [b"x_%d.png" % i for i in range(len(labels))]}
    if style == "py2":
        buf = io.BytesIO()
        Py2StylePickler(buf, protocol=2).dump(obj)
        # numpy 1.x / Python 2 name for the array reconstructor
        return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return pickle.dumps(obj, protocol=2 if style == "py3" else 5)


def write_cifar_py(folder: Path, style: str) -> dict:
    folder.mkdir(parents=True)
    out = {}
    for i, name in enumerate(batch_files("py")):
        data, labels = cifar_arrays(2, i)
        (folder / name).write_bytes(cifar_pickle(data, labels, style))
        out[name] = (data, labels)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"]}, protocol=2))
    return out


def check_hwc(images: np.ndarray, flat: np.ndarray) -> None:
    # pixel (h, w, c) of image n is byte c*1024 + h*32 + w of its record
    assert images.shape == (len(flat), 32, 32, 3) and images.dtype == np.uint8 and images.flags.c_contiguous
    assert images[0, 1, 2, 0] == flat[0, 0 * 1024 + 1 * 32 + 2]
    assert images[-1, 31, 5, 2] == flat[-1, 2 * 1024 + 31 * 32 + 5]
    np.testing.assert_array_equal(images.transpose(0, 3, 1, 2).reshape(len(flat), -1), flat)


def test_cifar_binary(tmp_path):
    written = write_cifar_bin(tmp_path / "cifar-10-batches-bin")
    for root in (tmp_path, tmp_path / "cifar-10-batches-bin"):
        src = cifar.find_cifar10(root)
        assert src == cifar.Cifar10Source("bin", tmp_path / "cifar-10-batches-bin")
    data = cifar.load_cifar10_batches(src)
    train_x, train_y = data["train"]
    assert train_x.shape == (15, 32, 32, 3) and train_y.dtype == np.int64
    flat = np.concatenate([written[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    check_hwc(train_x, flat)
    np.testing.assert_array_equal(data["test"][1], written["test_batch.bin"][1])


def test_cifar_binary_truncated_and_incomplete(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar_bin(folder)
    p = folder / "data_batch_2.bin"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataError, match="data_batch_2.bin"):
        cifar.load_cifar10_batches(cifar.find_cifar10(tmp_path))
    (folder / "test_batch.bin").unlink()
    with pytest.raises(DataError, match="incomplete: missing test_batch.bin"):
        cifar.find_cifar10(tmp_path)


@pytest.mark.parametrize("style", ["py2", "py3", "proto5"])
def test_cifar_python_batches(tmp_path, style):
    written = write_cifar_py(tmp_path / "cifar-10-batches-py", style)
    src = cifar.find_cifar10(tmp_path)
    assert src.kind == "py"
    data = cifar.load_cifar10_batches(src)
    test_x, test_y = data["test"]
    check_hwc(test_x, written["test_batch"][0])
    np.testing.assert_array_equal(test_y, written["test_batch"][1])
    assert data["train"][0].shape == (10, 32, 32, 3)


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", ["os.system", "eval", "numpy-object-array"])
def test_cifar_malicious_pickle_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    if payload == "os.system":
        obj = {b"data": Evil(marker), b"labels": [0]}
    elif payload == "eval":
        obj = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _EvalReduce(marker)}
    else:
        obj = {b"data": np.array([Evil(marker)], dtype=object), b"labels": [0]}
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in batch_files("py"):
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(DataError, match="not a CIFAR-10 pickle and was refused for safety") as e:
        cifar.load_cifar10_batches(cifar.find_cifar10(tmp_path))
    assert "data_batch_1" in str(e.value)
    assert not marker.exists()


class _EvalReduce:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


def test_cifar_garbage_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_py(folder, "py3")
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:200])
    with pytest.raises(DataError, match="data_batch_3"):
        cifar.load_cifar10_batches(cifar.find_cifar10(tmp_path))


def test_cifar_find_imagefolder_and_missing(tmp_path):
    for split in ("train", "test"):
        (tmp_path / "imgs" / split / "cat").mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "imgs" / split / "cat" / "0.png")
    assert cifar.find_cifar10(tmp_path / "imgs") == cifar.Cifar10Source("imagefolder", tmp_path / "imgs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        cifar.find_cifar10(tmp_path / "empty")
    assert "cifar-10-binary.tar.gz" in str(e.value) and "data.download: true" in str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        cifar.find_cifar10(tmp_path / "nope")


def make_tar(path: Path, members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


def test_cifar_download_and_safe_extract(tmp_path, monkeypatch):
    record = bytes([3]) + bytes(3072)
    members = {f"cifar-10-batches-bin/{n}": record * 2 for n in batch_files("bin")}
    good = make_tar(tmp_path / "good.tgz", members)
    monkeypatch.setattr(idx, "_fetch_url", lambda url, out: out.write(good))
    monkeypatch.setattr(cifar, "BINARY_MD5", hashlib.md5(good).hexdigest())
    dest = tmp_path / "data"
    src = cifar.download_cifar10(dest)
    assert src == cifar.Cifar10Source("bin", dest / "cifar-10-batches-bin")
    assert cifar.load_cifar10_batches(src)["test"][1].tolist() == [3, 3]
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-bin"]

    escaping = {"../escape.bin": b"x", **members}
    for bad_members, link in ((escaping, None), (members, "cifar-10-batches-bin/ln")):
        bad = make_tar(tmp_path / "bad.tgz", bad_members, link)
        monkeypatch.setattr(idx, "_fetch_url", lambda url, out, bad=bad: out.write(bad))
        monkeypatch.setattr(cifar, "BINARY_MD5", hashlib.md5(bad).hexdigest())
        dest2 = tmp_path / f"data-{len(bad)}"
        with pytest.raises(DataError, match="refusing to extract"):
            cifar.download_cifar10(dest2)
        assert not (tmp_path / "escape.bin").exists()
        assert not (dest2 / "cifar-10-batches-bin").exists()


# ----------------------------------------------------------------------------------------------------------
# Image folders


def save_jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """An image folder with every awkward case we promise to handle."""
    root = tmp_path_factory.mktemp("zoo")
    cat, dog = root / "train" / "cat", root / "train" / "dog"
    cat.mkdir(parents=True)
    dog.mkdir(parents=True)
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))

    Image.new("RGB", (10, 8), (200, 10, 10)).save(cat / "a_rgb.png")
    noise.save(cat / "b_upper.JPG", format="JPEG")
    noise.save(cat / "c_odd.jpeg", format="JPEG")
    frames = [Image.new("P", (8, 8), 0), Image.new("P", (8, 8), 1)]
    palette = [0, 255, 0, 0, 0, 255] + [0] * 762  # index 0 green, 1 blue
    for f in frames:
        f.putpalette(palette)
    frames[0].save(cat / "d_anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    Image.new("L", (8, 8), 77).save(cat / "e_gray.png")
    rgba = Image.new("RGBA", (8, 8), (0, 0, 255, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black -> white
    rgba.save(cat / "f_rgba.png")
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.save(cat / "g_palette_transparent.png", transparency=0)
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cat / "h_cmyk.jpg", quality=95)
    wide = np.full((8, 8), 65535, dtype=np.uint16)
    wide[0, 0] = 1000
    Image.fromarray(wide).save(cat / "i_16bit.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display upright
    Image.new("RGB", (16, 8), (0, 128, 0)).save(cat / "j_exif.jpg", exif=exif.tobytes())
    Image.new("1", (8, 8), 1).save(cat / "k_bilevel.bmp")
    (cat / "x_corrupt.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    full = save_jpeg_bytes(noise.resize((64, 64)), quality=95)
    (cat / "y_truncated.jpg").write_bytes(full[: len(full) // 2])
    (cat / "notes.txt").write_text("not an image")
    (cat / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (cat / "._x.jpg").write_bytes(b"\0\5\26\7 AppleDouble")
    Image.new("RGB", (12, 12), (1, 2, 3)).save(dog / "a.png")
    Image.new("RGB", (12, 12), (4, 5, 6)).save(dog / "b.webp", lossless=True)

    for c in ("cat", "dog"):
        (root / "Valid" / c).mkdir(parents=True)
        Image.new("RGB", (9, 9), (9, 9, 9)).save(root / "Valid" / c / "v.tif")
    (root / "README.md").write_text("hello")
    return root


def test_scan_zoo(zoo):
    layout = scan_image_folder(zoo)
    assert layout.classes == ["cat", "dog"]
    assert set(layout.splits) == {"train", "val"}
    train_names = [p.name for p, _ in layout.splits["train"]]
    assert train_names == [
        "a_rgb.png", "b_upper.JPG", "c_odd.jpeg", "d_anim.gif", "e_gray.png", "f_rgba.png",
        "g_palette_transparent.png", "h_cmyk.jpg", "i_16bit.png", "j_exif.jpg", "k_bilevel.bmp",
        "x_corrupt.jpg", "y_truncated.jpg", "a.png", "b.webp",
    ]
    assert [label for _, label in layout.splits["train"]] == [0] * 13 + [1] * 2
    assert [(p.name, label) for p, label in layout.splits["val"]] == [("v.tif", 0), ("v.tif", 1)]
    skipped = {p.name: why for p, why in layout.skipped}
    assert set(skipped) == {"notes.txt", "README.md"}
    assert "not an image" in skipped["notes.txt"]
    assert layout.hidden == 2  # .DS_Store and ._x.jpg: ignored silently, only counted


def test_decode_zoo(zoo):
    layout = scan_image_folder(zoo)
    paths = [p for p, _ in layout.splits["train"]]
    images, ok, failures = decode_images(paths, (8, 8), channels=3, workers=2)
    assert sorted(p.name for p, _ in failures) == ["x_corrupt.jpg", "y_truncated.jpg"]
    assert all(reason for _, reason in failures)
    assert images.shape == (len(paths) - 2, 8, 8, 3) and images.dtype == np.uint8
    assert [paths[i].name for i in ok] == [p.name for p in paths if p.name[0] not in "xy"]
    by_name = {paths[i].name: images[row] for row, i in enumerate(ok)}
    assert tuple(by_name["a_rgb.png"][4, 4]) == (200, 10, 10)
    assert tuple(by_name["d_anim.gif"][4, 4]) == (0, 255, 0)  # first frame only
    assert tuple(by_name["e_gray.png"][4, 4]) == (77, 77, 77)
    assert tuple(by_name["f_rgba.png"][0, 0]) == (255, 255, 255)  # transparent -> white
    assert tuple(by_name["f_rgba.png"][5, 5]) == (0, 0, 255)
    assert tuple(by_name["g_palette_transparent.png"][0, 0]) == (255, 255, 255)
    assert tuple(by_name["g_palette_transparent.png"][5, 5]) == (40, 50, 60)
    r, g, b = (int(v) for v in by_name["h_cmyk.jpg"][4, 4])
    assert r > 200 and g < 60 and b < 60  # C=0 M=Y=255: red
    assert tuple(by_name["i_16bit.png"][4, 4]) == (255, 255, 255)
    assert tuple(by_name["k_bilevel.bmp"][4, 4]) == (255, 255, 255)

    # serial, thread-pool and forked-process decoding give exactly the same bytes and failures
    serial, ok1, fail1 = decode_images(paths, (8, 8), channels=3, workers=1)
    assert ok1 == ok and np.array_equal(serial, images) and fail1 == failures
    if sys.platform == "linux":
        forked, ok2, fail2 = decode_images(paths, (8, 8), channels=3, workers=2, processes=True)
        assert ok2 == ok and np.array_equal(forked, images) and fail2 == failures


def test_decode_process_failure_falls_back_to_threads(zoo, monkeypatch):
    from danlu.data import imagefolder

    def broken(*args, **kwargs):
        raise OSError("fork failed")

    monkeypatch.setattr(imagefolder, "_decode_forked", broken)
    paths = [p for p, _ in scan_image_folder(zoo).splits["train"]]
    with pytest.warns(UserWarning, match="using threads"):
        images, ok, failures = decode_images(paths, (8, 8), workers=2, processes=True)
    assert len(ok) == len(paths) - 2 and len(failures) == 2


def test_decode_image_details(zoo):
    cat = zoo / "train" / "cat"
    wide = decode_image(cat / "i_16bit.png", None, channels=1)
    assert wide.shape == (8, 8, 1) and wide[1, 1, 0] == 255
    assert wide[0, 0, 0] == 1000 >> 8  # 16-bit values are scaled down, not clipped at 255
    upright = decode_image(cat / "j_exif.jpg", None)
    assert upright.shape == (16, 8, 3)  # stored 16 wide x 8 high, EXIF says rotate: 8 wide x 16 high
    gray = decode_image(cat / "a_rgb.png", (4, 6), channels=1)
    assert gray.shape == (4, 6, 1)
    from_bytes = decode_image((cat / "b_upper.JPG").read_bytes(), (20, 24))
    assert np.array_equal(from_bytes, decode_image(cat / "b_upper.JPG", (20, 24)))
    with pytest.raises(ValueError):
        decode_image(cat / "a_rgb.png", None, channels=2)

    # in-memory inputs (what a predictor receives) go through the same conversion and resize
    arr = decode_image(cat / "f_rgba.png", None)
    with Image.open(cat / "f_rgba.png") as im:
        assert np.array_equal(decode_image(im, None), arr)
        rgba = np.asarray(im)
    assert np.array_equal(decode_image(rgba, None), arr)  # alpha composited on white here too
    assert decode_image(np.zeros((5, 7), np.uint8), (3, 3)).shape == (3, 3, 3)
    assert decode_image(np.zeros((5, 7, 1), np.uint8), None, channels=1).shape == (5, 7, 1)
    with pytest.raises(DataError, match="uint8"):
        decode_image(np.zeros((5, 7, 3), np.float32), None)


def test_decode_large_jpeg_draft_is_close(tmp_path):
    """The reduced-scale JPEG decode used for big images stays close to a full decode + resize."""
    yy, xx = np.mgrid[0:800, 0:1200]
    smooth = np.stack([(xx * 255 // 1199), (yy * 255 // 799), ((xx + yy) * 255 // 1998)], -1).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(smooth).save(path, quality=95)
    fast = decode_image(path, (64, 96)).astype(int)
    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGB").resize((96, 64), Image.Resampling.BILINEAR)).astype(int)
    assert fast.shape == (64, 96, 3) and np.abs(fast - ref).mean() < 2


def test_decode_size_none_mismatch(zoo):
    cat = zoo / "train" / "cat"
    images, ok, failures = decode_images([cat / "a_rgb.png", cat / "e_gray.png", cat / "x_corrupt.jpg"], None)
    assert images.shape == (1, 8, 10, 3) and ok == [0]
    assert [p.name for p, _ in failures] == ["e_gray.png", "x_corrupt.jpg"]
    assert "differs" in failures[0][1]
    empty, ok, failures = decode_images([], (4, 4))
    assert empty.shape == (0, 4, 4, 3) and ok == [] and failures == []


def _png(path: Path, color=(1, 2, 3)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path)


def test_scan_flat_root_is_all_split(tmp_path):
    _png(tmp_path / "b" / "1.png")
    _png(tmp_path / "a" / "sub" / "2.png")  # nested folders inside a class are read
    _png(tmp_path / "a" / "1.PNG")
    layout = scan_image_folder(tmp_path)
    assert layout.classes == ["a", "b"] and list(layout.splits) == ["all"]
    assert [(p.relative_to(tmp_path).as_posix(), y) for p, y in layout.splits["all"]] == [
        ("a/1.PNG", 0), ("a/sub/2.png", 0), ("b/1.png", 1)
    ]


def test_scan_errors(tmp_path):
    _png(tmp_path / "r1" / "train" / "cat" / "1.png")
    (tmp_path / "r1" / "train" / "dog").mkdir()
    with pytest.raises(DataError, match=r"class folder .*dog contains no images"):
        scan_image_folder(tmp_path / "r1")

    _png(tmp_path / "r2" / "train" / "cat" / "1.png")
    _png(tmp_path / "r2" / "val" / "cat" / "1.png")
    _png(tmp_path / "r2" / "val" / "Dgo" / "1.png")
    with pytest.raises(DataError, match="not in .*train: Dgo"):
        scan_image_folder(tmp_path / "r2")

    _png(tmp_path / "r3" / "train" / "cat" / "1.png")
    (tmp_path / "r3" / "test").mkdir()
    (tmp_path / "r3" / "test" / "loose.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"r3/test has no class folders"):
        scan_image_folder(tmp_path / "r3")

    _png(tmp_path / "r4" / "train" / "cat" / "1.png")
    (tmp_path / "r4" / "train" / "cat" / "readme.txt").write_text("x")
    (tmp_path / "r4" / "train" / "cow").mkdir()
    (tmp_path / "r4" / "train" / "cow" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="cow contains no images"):
        scan_image_folder(tmp_path / "r4")

    with pytest.raises(DataError, match="does not exist"):
        scan_image_folder(tmp_path / "missing")


@pytest.mark.skipif(not (DATASETS / "hymenoptera").is_dir(), reason="shared hymenoptera not available")
def test_real_hymenoptera_scan_and_decode():
    layout = scan_image_folder(DATASETS / "hymenoptera")
    assert layout.classes == ["ants", "bees"]
    assert len(layout.splits["train"]) == 245 and len(layout.splits["val"]) == 153
    paths = [p for p, _ in layout.splits["train"][:24]]
    images, ok, failures = decode_images(paths, (64, 64))
    assert images.shape == (24, 64, 64, 3) and failures == []


# ----------------------------------------------------------------------------------------------------------
# Cache


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DANLU_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DANLU_CACHE", str(tmp_path))
    assert cache.cache_dir() == tmp_path
    monkeypatch.delenv("DANLU_CACHE")
    assert cache.cache_dir() == Path.home() / ".cache" / "danlu"


def test_cache_hit_miss_and_rebuild(cache_env, tmp_path):
    files = []
    for i in range(3):
        f = tmp_path / f"img{i}.png"
        _png(f)
        files.append(f)
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "y": np.array([1, 2], np.int64),
                "classes": np.array(["ant", "bee"])}

    key = cache.fingerprint(files, size=[32, 32], channels=3)
    assert len(key) == 20 and key == cache.fingerprint(files, channels=3, size=[32, 32])
    assert key != cache.fingerprint(files, size=[32, 32], channels=1)
    assert key != cache.fingerprint(files[::-1], size=[32, 32], channels=3)

    first, was_cached = cache.load_or_build("toy", key, build)
    assert not was_cached and len(calls) == 1
    second, was_cached = cache.load_or_build("toy", key, build)
    assert was_cached and len(calls) == 1
    for k in first:
        assert second[k].dtype == first[k].dtype
        np.testing.assert_array_equal(second[k], first[k])
    assert second["classes"].tolist() == ["ant", "bee"]
    mapped, was_cached = cache.load_or_build("toy", key, build, mmap=True)
    assert was_cached and np.array_equal(mapped["x"], first["x"]) and mapped["x"].flags.writeable

    st = files[1].stat()
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    new_key = cache.fingerprint(files, size=[32, 32], channels=3)
    assert new_key != key
    _, was_cached = cache.load_or_build("toy", new_key, build)
    assert not was_cached and len(calls) == 2

    entry = cache.entry_path("toy", new_key)
    assert entry.parent == cache_env / "decoded"
    assert [p.name for p in entry.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left
    for damage in (lambda b: b[: len(b) - 40], lambda b: b"garbage" + b[7:], lambda b: b""):
        entry.write_bytes(damage(entry.read_bytes()))
        with pytest.warns(RuntimeWarning, match="rebuilding"):
            rebuilt, was_cached = cache.load_or_build("toy", new_key, build)
        assert not was_cached and np.array_equal(rebuilt["x"], first["x"])
    assert len(calls) == 5
    with pytest.raises(DataError, match="img9.png"):
        cache.fingerprint([tmp_path / "img9.png"])



def test_cache_unwritable_only_warns(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("DANLU_CACHE", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="could not write the data cache"):
        arrays, was_cached = cache.load_or_build("toy", "k", lambda: {"x": np.ones(3, np.uint8)})
    assert not was_cached and arrays["x"].tolist() == [1, 1, 1]


def test_cache_rejects_object_arrays(cache_env):
    with pytest.raises(TypeError, match="dtype object"):
        cache.load_or_build("toy", "k", lambda: {"x": np.array([{}, None], dtype=object)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty, _ = cache.load_or_build("empty", "k", lambda: {})
        assert empty == {}
        again, was_cached = cache.load_or_build("empty", "k", lambda: {})
        assert again == {} and was_cached
