"""Every loader checks its files' content in the task's pre-check (``Config.validate()``, run by the plan before any
work): a bad file or a knob whose valid values depend on the data is one line naming the key, the file and the
problem, exit 2, and no record (issue 24, part 1). Each case runs the CLI in-process, as a user would."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_data import write_cifar
from test_domain_adaptation import write_features, write_images

from mlo_bench.suite.cli import main
from mlo_bench.tasks.data import officehome

DS = ["task=data_selection", "task.seq_len=12", "steps=1", "isolate=false", "progress=false"]


def refused(tmp_path, capsys, args, *needles):
    """``mlo-bench run ARGS`` exits 2 with one stderr line holding every needle, and writes nothing."""
    results = tmp_path / "results"
    code = main(["run", *args, f"results_dir={results}"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert str(needle) in err, err
    assert not results.exists(), "nothing ran, no record"
    return err


# ---- data selection: text corpora (task.data=files) and task.domain ---------------------------------------------
def corpus(path, lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def random_line(seed=0):
    raw = np.random.default_rng(seed).bytes(200)
    return bytes(b for b in raw if b not in b"\n\r\x0b\x0c\x1c\x1d\x1e\x85") or b"\xff"


@pytest.mark.parametrize("case,key,needles", [
    ("missing", "generic", ["no such file"]),
    ("empty", "generic", ["empty corpus"]),
    ("truncated", "generic", [":2: not JSON"]),
    ("random-bytes", "specific", [":3: not JSON"]),
    ("no-text", "generic", [":2: no \"text\""]),
    ("too-short", "specific", ["shorter than task.seq_len + 1 = 13 bytes"]),
    ("directory", "specific", ["is a directory"]),
])
def test_a_bad_corpus_file_is_refused_before_any_work(tmp_path, capsys, case, key, needles):
    good = json.dumps({"text": "the quick brown fox jumps over the lazy dog"})
    ok = corpus(tmp_path / "ok.jsonl", [good, good, good])
    bad = tmp_path / f"{case}.jsonl"
    if case == "empty":
        corpus(bad, ["", "   "])
    elif case == "truncated":
        corpus(bad, [good, good[:-7]])
    elif case == "random-bytes":
        corpus(bad, [good, good, random_line()])
    elif case == "no-text":
        corpus(bad, [good, json.dumps({"body": "a" * 40})])
    elif case == "too-short":
        corpus(bad, [json.dumps({"text": "a" * 12}), json.dumps({"text": "b" * 5})])
    elif case == "directory":
        bad.mkdir()
    files = {"generic": ok, "specific": ok, key: bad}
    refused(tmp_path, capsys, [*DS, "task.data=files", f"task.generic={files['generic']}",
                               f"task.specific={files['specific']}"], f"task.{key}", bad, *needles)


def test_a_domain_this_python_lacks_is_refused_listing_the_valid_ones(tmp_path, capsys):
    err = refused(tmp_path, capsys, [*DS, "task.domain=nosuchpkg"], "task.domain must be one of", "'nosuchpkg'")
    assert "encodings" in err and "email" in err, "the valid values are listed"


# ---- Office-Home image folders (task.dataset=images) and features (.npz) ---------------------------------------
DA = ["task=domain_adaptation", "task.image_size=4", "task.target_train_per_class=1", "steps=1", "method=cg",
      "isolate=false", "progress=false"]


@pytest.mark.parametrize("case,where", [("random-bytes", "Art"), ("truncated", "Real_World"), ("empty", "Product")])
def test_an_undecodable_image_anywhere_in_the_folder_is_refused_before_any_work(tmp_path, capsys, case, where):
    root = write_images(tmp_path / "oh")
    bad = root / where / "mug" / "1.jpg"
    content = bad.read_bytes()
    bad.write_bytes({"random-bytes": np.random.default_rng(0).bytes(len(content)),
                     "truncated": content[: len(content) // 2], "empty": b""}[case])
    why = {"random-bytes": "not an image", "truncated": "truncated", "empty": "empty file (0 bytes)"}[case]
    refused(tmp_path, capsys, [*DA, "task.dataset=images", f"task.data_root={root}"], "task.data_root:", bad,
            "unreadable image", why)


def test_the_pre_check_decodes_once_and_the_task_reuses_it_until_a_file_changes(tmp_path):
    root = write_images(tmp_path / "oh")
    first = officehome.decode_images(root, 4)
    assert set(first) == {"Art", "Clipart", "Product", "Real_World"}
    assert first["Art"][0].shape == (8, 3, 4, 4) and first["Art"][0].dtype == np.uint8
    assert officehome.decode_images(root, 4) is first, "cached while no file changes"
    x, y = officehome.load_images(root, "Art", 4)
    np.testing.assert_array_equal(x, first["Art"][0] / 255.0)
    np.testing.assert_array_equal(y, first["Art"][1])
    f = root / "Clipart" / "bike" / "0.jpg"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert officehome.decode_images(root, 4) is not first, "a changed file is decoded again"


def test_non_finite_npz_features_are_refused_naming_the_file(tmp_path, capsys):
    root = tmp_path / "feat"
    root.mkdir()
    write_features(root)
    with np.load(root / "Product.npz") as z:
        x, y = z["features"].copy(), z["labels"]
    x[7, 2] = np.inf
    np.savez(root / "Product.npz", features=x, labels=y)
    refused(tmp_path, capsys, [*DA, "task.dataset=features", f"task.data_root={root}"], "task.data_root:",
            root / "Product.npz", "non-finite", "row 7")


# ---- CIFAR-10 (mwn): too few examples per class, found in the pre-check -----------------------------------------
def test_a_well_formed_but_too_small_cifar_directory_is_refused_before_any_work(tmp_path, capsys):
    root = write_cifar(tmp_path / "cifar")  # 100 training images: 10 per class
    args = ["task=mwn", "task.dataset=cifar10", f"task.data_root={root}", "task.model=cnn", "steps=1",
            "isolate=false", "progress=false"]
    refused(tmp_path, capsys, args, "task.data_root:", f"{root}/data_batch_1..5",
            "class 0 has 10 examples; 11 are needed", "10 meta + 1 training")
    small_test = write_cifar(tmp_path / "cifar-t", n_test=5)  # test_batch: classes 0..4 only
    refused(tmp_path, capsys, [*args[:2], f"task.data_root={small_test}", *args[3:], "task.meta_per_class=2"],
            small_test / "test_batch", "class 5 has 0 examples; 1 are needed")


def test_digits_too_small_for_the_held_out_sets_is_refused_before_any_work(tmp_path, capsys):
    refused(tmp_path, capsys, ["task=mwn", "task.meta_per_class=150", "steps=1", "isolate=false"],
            "task.meta_per_class, task.test_per_class: digits", "examples; 201 are needed")
