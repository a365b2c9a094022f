"""MNIST-format and CIFAR-binary files written by the test, trained through the CLI."""

from __future__ import annotations

import gzip
import struct

import numpy as np

from tests.conftest import last_json


def _idx(path, arr: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fake_mnist(root, n_train=300, n_test=100):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, c in enumerate(labels):  # a bright bar whose row encodes the class
            images[i, 2 + 2 * c: 4 + 2 * c, 4:24] = 255
        _idx(root / f"{prefix}-images-idx3-ubyte.gz", images, 0x803)
        _idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, 0x801)


def test_fashion_mnist_from_idx_files(cli, tmp_path):
    root = tmp_path / "fm"
    _fake_mnist(root)
    code, out, err = cli("train", "mnist-mlp", "data.name=fashion-mnist", f"data.root={root}", "train.epochs=3",
                         "--json", "--quiet")
    assert code == 0, err
    res = last_json(out)
    assert res["metrics"]["accuracy"] > 0.9
    import json
    from pathlib import Path

    schema = json.loads((Path(res["run"]) / "schema.json").read_text())
    assert schema["classes"][0] == "T-shirt/top" and schema["input_shape"] == [1, 28, 28]


def test_mnist_found_through_data_dir(cli, tmp_path):
    _fake_mnist(tmp_path / "data" / "mnist")
    code, out, err = cli("train", "mnist-cnn", "train.epochs=1", "--data-dir", tmp_path / "data", "--json", "--quiet")
    assert code == 0, err


def test_missing_mnist_says_where_to_put_it(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DANLU_DATA", str(tmp_path / "empty"))
    code, _, err = cli("train", "mnist-mlp", "--data-dir", tmp_path / "nothing")
    assert code == 2 and "mnist not found" in err and "download" in err


def test_cifar10_binary_batches(cli, tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}.bin", 40) for i in range(1, 6)] + [("test_batch.bin", 50)]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = np.zeros((n, 3, 32, 32), np.uint8)
        for i, c in enumerate(labels):
            pixels[i, c % 3, :, :] = 25 * c
        records = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
    code, out, err = cli("train", "cifar10-cnn", f"data.root={tmp_path / 'cifar'}", "train.epochs=2",
                         "model.channels=8", "--json", "--quiet")
    assert code == 0, err
    assert last_json(out)["metrics"]["accuracy"] > 0.3
