"""Data for the MWN task: long-tailed class sizes and splits, label noise, the digits default and the CIFAR-10
pickle loader (on tiny fixtures written here in the exact format), and its one-line errors for bad paths."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mlo_bench.suite.cli import main
from mlo_bench.tasks.data import images
from mlo_bench.tasks.data.longtail import class_sizes, long_tailed_split, uniform_noise


def test_class_sizes_follow_shu_et_al():
    sizes, clamped = class_sizes(5000, 10, 100)
    assert sizes[0] == 5000 and sizes[-1] == 50 and clamped == []
    assert all(a > b for a, b in zip(sizes, sizes[1:], strict=False)), "strictly decreasing"
    ratios = np.array(sizes[:-1]) / np.array(sizes[1:])
    np.testing.assert_allclose(ratios, 100 ** (1 / 9), rtol=0.02)  # geometric, up to int() truncation
    assert class_sizes(4990, 10, 200)[0][-1] == 24
    assert class_sizes(100, 10, 1)[0] == [100] * 10


def test_class_sizes_clamp_to_one_and_say_which():
    sizes, clamped = class_sizes(114, 10, 200)  # 114/200 < 1 for the last class
    assert min(sizes) == 1 and clamped == [9]
    sizes, clamped = class_sizes(10, 10, 100)
    assert clamped == [5, 6, 7, 8, 9] and sizes[5:] == [1] * 5 and sizes[0] == 10


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return images.load_digits()


def test_digits_load_offline_as_nchw(digits):
    x, y = digits
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,) and y.dtype == np.int64
    assert 0 <= x.min() and x.max() <= 1 and set(np.unique(y)) == set(range(10))


@pytest.mark.parametrize("imbalance", [10, 50, 100])
def test_long_tailed_split_is_disjoint_balanced_and_deterministic(digits, imbalance):
    _, y = digits
    s = long_tailed_split(y, 10, imbalance, 10, 50, np.random.default_rng([0, 1]))
    parts = [set(s.train.tolist()), set(s.meta.tolist()), set(s.test.tolist())]
    assert sum(map(len, parts)) == len(set.union(*parts)), "train, meta and test are disjoint"
    assert len(parts[0]) == len(s.train), "no duplicates in train"
    assert np.bincount(y[s.meta], minlength=10).tolist() == [10] * 10
    assert np.bincount(y[s.test], minlength=10).tolist() == [50] * 10
    assert np.bincount(y[s.train], minlength=10).tolist() == s.sizes
    assert s.sizes == class_sizes(s.n_max, 10, imbalance)[0] and s.n_max == min(np.bincount(y)) - 60
    again = long_tailed_split(y, 10, imbalance, 10, 50, np.random.default_rng([0, 1]))
    for a, b in ((s.train, again.train), (s.meta, again.meta), (s.test, again.test)):
        np.testing.assert_array_equal(a, b)
    other = long_tailed_split(y, 10, imbalance, 10, 50, np.random.default_rng([1, 1]))
    assert set(other.test.tolist()) != parts[2], "another seed, another split"


def test_split_refuses_classes_too_small():
    with pytest.raises(ValueError, match="class 1 has 3 examples"):
        long_tailed_split(np.array([0] * 20 + [1] * 3), 2, 10, 2, 2, np.random.default_rng(0))


def test_uniform_noise():
    y = np.arange(10_000) % 10
    np.testing.assert_array_equal(uniform_noise(y, 0.0, 10, np.random.default_rng(0)), y)
    noisy = uniform_noise(y, 0.4, 10, np.random.default_rng(0))
    assert 0.33 < np.mean(noisy != y) < 0.39  # 0.4 × 9/10 change class
    assert noisy.min() >= 0 and noisy.max() <= 9


# ---------------------------------------------------------------------------------------------------------------
# CIFAR-10 python batches


def write_cifar(root, per_batch: int = 20, n_test: int = 20, seed: int = 0):
    """A tiny CIFAR-10 directory in the exact format: pickled dicts with b'data' uint8 (N, 3072), b'labels'."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)

    def batch(n, offset):
        return {b"batch_label": b"fixture", b"labels": [(offset + i) % 10 for i in range(n)],
                b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                b"filenames": [f"img{offset + i}.png".encode() for i in range(n)]}

    for i in range(1, 6):
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch, i)))
    (root / "test_batch").write_bytes(pickle.dumps(batch(n_test, 0)))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_cases_per_batch": per_batch}))
    return root


def test_cifar_fixture_loads(tmp_path):
    root = write_cifar(tmp_path / "cifar-10-batches-py")
    x_tr, y_tr, x_te, y_te = images.load_cifar10(root)
    assert x_tr.shape == (100, 3, 32, 32) and x_tr.dtype == np.uint8 and y_tr.shape == (100,)
    assert x_te.shape == (20, 3, 32, 32) and y_te.dtype == np.int64
    raw = pickle.loads((root / "data_batch_1").read_bytes())
    np.testing.assert_array_equal(x_tr[0].reshape(-1), raw[b"data"][0])  # row-major 3×32×32: channel planes
    assert np.bincount(y_tr).tolist() == [10] * 10
    z = images.cifar_normalise(x_tr[:4])
    assert z.dtype == np.float64 and abs(z.mean()) < 1.5
    aug = images.augment_crop_flip(z, np.random.default_rng(0))
    assert aug.shape == z.shape and not np.array_equal(aug, z)


def _corrupt(root, name, content: bytes):
    (root / name).write_bytes(content)


@pytest.mark.parametrize("case", ["no-dir", "missing-batch", "missing-meta", "garbage", "not-a-dict", "no-labels",
                                  "bad-shape", "bad-labels"])
def test_cifar_bad_paths_are_one_line_errors_naming_the_path(tmp_path, case):
    root = write_cifar(tmp_path / "cifar")
    target = root / "data_batch_3"
    if case == "no-dir":
        root, target = tmp_path / "nowhere", tmp_path / "nowhere"
    elif case == "missing-batch":
        target.unlink()
    elif case == "missing-meta":
        target = root / "batches.meta"
        target.unlink()
    elif case == "garbage":
        _corrupt(root, "data_batch_3", b"this is not a pickle")
    elif case == "not-a-dict":
        _corrupt(root, "data_batch_3", pickle.dumps([1, 2, 3]))
    elif case == "no-labels":
        _corrupt(root, "data_batch_3", pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))
    elif case == "bad-shape":
        _corrupt(root, "data_batch_3", pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    else:
        _corrupt(root, "data_batch_3", pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}))
    with pytest.raises(ValueError) as info:
        images.load_cifar10(root)
    message = str(info.value)
    assert "\n" not in message and str(target) in message and "data_batch_1" in message


def test_cli_reports_a_bad_data_root_in_one_line_before_running(tmp_path, capsys):
    code = main(["run", "task=mwn", "task.dataset=cifar10", f"task.data_root={tmp_path / 'missing'}",
                 f"results_dir={tmp_path / 'results'}", "isolate=false"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "task.data_root" in err and str(tmp_path / "missing") in err and "data_batch_1" in err
    assert not (tmp_path / "results").exists(), "nothing ran"
    code = main(["run", "task=mwn", "task.dataset=cifar10", f"results_dir={tmp_path / 'results'}"])
    assert code == 2 and "task.data_root must be given" in capsys.readouterr().err


def test_mwn_task_on_the_cifar_fixture(tmp_path):
    from mlo_bench.tasks.mwn import MetaWeightNet, MWNConfig

    root = write_cifar(tmp_path / "cifar", per_batch=40)  # 20 images per class
    cfg = MWNConfig(dataset="cifar10", data_root=str(root), imbalance_factor=10, meta_per_class=2, model="cnn",
                    batch_size=8, augment=True)
    cfg.validate()
    task = MetaWeightNet(cfg, 0)
    assert task.split.n_max == 18 and task.split.sizes[0] == 18 and task.split.sizes[-1] == 1
    assert task.x_test.shape == (20, 3, 32, 32) and np.bincount(task.y_meta).tolist() == [2] * 10
    assert "x_train" not in task.data(), "augmented batches bring their own images"
    b = task.batch("classifier", 3)
    assert b["x_aug"].shape == (8, 3, 32, 32) and b["idx"].shape == (8,)


def test_paper_preset_plans_on_a_cifar_directory_and_refuses_a_bad_one(tmp_path):
    from mlo_bench.suite.run.compose import compose
    from mlo_bench.suite.run.plan import ConfigError, prepare

    root = write_cifar(tmp_path / "cifar-10-batches-py", per_batch=40)  # 20 per class: 10 meta + 10 training
    plan = prepare(compose(["task=mwn", "+preset=paper", f"task.data_root={root}"]))
    cfg = plan.task_cfg
    assert (cfg.dataset, cfg.model, cfg.augment, plan.steps) == ("cifar10", "resnet32", True, 10000)
    (root / "test_batch").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="test_batch: not a readable pickle"):
        prepare(compose(["task=mwn", "+preset=paper", f"task.data_root={root}"]))
