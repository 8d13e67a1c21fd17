"""The text classification data layer (issue #29): the standard library's lines by package, GLUE TSV files, the
hash and WordPiece tokenizers, and the BERT checkpoint loader — each on data the tests make or the installation
ships. Fast (seconds): one build of the stdlib set, tiny files everywhere else."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from mlo_bench.suite.models import checkpoint
from mlo_bench.tasks.data import text_classes as tc
from mlo_bench.tasks.data.text_tokenizers import HashTokenizer, WordPieceTokenizer, make_tokenizer


# ---------------------------------------------------------------- the embedded set
@pytest.fixture(scope="module")
def lines() -> tc.LabelledText:
    return tc.stdlib_lines(n_classes=10)


def test_stdlib_lines_properties(lines):
    assert len(lines.classes) == 10 and len(set(lines.classes)) == 10
    assert "toplevel" not in lines.classes
    assert lines.labels.dtype == np.int64 and len(lines.labels) == len(lines.texts)
    assert lines.labels.min() == 0 and lines.labels.max() == 9
    counts = lines.counts()
    assert counts[0] == max(counts) and counts == sorted(counts, reverse=True)
    assert len(set(lines.texts)) == len(lines.texts), "a text is in two classes (or twice in one)"
    assert all(len(t) >= tc.DEFAULT_MIN_CHARS and t == t.strip() for t in lines.texts)
    assert all(any(ch.isalnum() for ch in t) for t in lines.texts)
    assert lines.provenance["lines"] == dict(zip(lines.classes, counts, strict=True))
    assert lines.provenance["python"].count(".") == 2


def test_stdlib_lines_deterministic_and_copies(lines):
    tc._stdlib_lines.cache_clear()
    tc._package_lines.cache_clear()
    again = tc.stdlib_lines(n_classes=10)
    assert again.texts == lines.texts and again.classes == lines.classes
    np.testing.assert_array_equal(again.labels, lines.labels)
    again.texts.append("x")
    again.labels[0] = 5
    third = tc.stdlib_lines(n_classes=10)
    assert third.texts == lines.texts and third.labels[0] == lines.labels[0]


def test_stdlib_lines_cap_and_fewer_classes(lines):
    small = tc.stdlib_lines(n_classes=3, max_per_class=50)
    assert small.classes == lines.classes[:3] and small.counts() == [50, 50, 50]
    head = [t for t, y in zip(lines.texts, lines.labels, strict=True) if y == 0]
    got = [t for t, y in zip(small.texts, small.labels, strict=True) if y == 0]
    assert got[0] == head[0] and got[-1] == head[-1] and set(got) <= set(head)
    with pytest.raises(ValueError, match="n_classes must be <="):
        tc.stdlib_lines(n_classes=10_000)
    with pytest.raises(ValueError, match="max_per_class"):
        tc.stdlib_lines(max_per_class=0)


def test_stdlib_lines_drops_shared_lines(tmp_path):
    body = "shared_line_of_code = compute(1, 2, 3)\n"
    for pkg in ("alpha", "beta"):
        (tmp_path / pkg).mkdir()
        for k in range(4):
            own = "\n".join(f"{pkg}_value_{k}_{j} = make_thing({j})" for j in range(400))
            junk = "\n)\n# ------------------------------\n"
            (tmp_path / pkg / f"m{k}.py").write_text(body + own + "\n" + own + junk)
    (tmp_path / "alpha" / "extra.py").write_text("\n".join(f"alpha_more_{j} = 1 + {j} + 2" for j in range(50)))
    got = tc.stdlib_lines(n_classes=2, root=str(tmp_path))
    assert got.classes == ("alpha", "beta") and got.counts() == [1650, 1600]
    assert not any("shared_line" in t or "----" in t for t in got.texts)


# ---------------------------------------------------------------- GLUE TSV
def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_glue_tsv_and_sst_dir(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\nit 's a charming journey . \t1\nflat and dull\t0\n\nok\t1\n")
    write(tmp_path / "dev.tsv", "sentence\tlabel\na gem\t1\n")
    train, test = tc.sst_dir(str(tmp_path))
    assert train.texts == ["it 's a charming journey .", "flat and dull", "ok"]
    assert train.labels.tolist() == [1, 0, 1] and train.labels.dtype == np.int64
    assert test.classes == train.classes == ("0", "1") and test.provenance["split"] == "test (dev.tsv)"
    other = write(tmp_path / "other.tsv", "idx\tlabel\ttext\n0\t2\tthree columns\n1\t0\tfine\n")
    assert tc.load_glue_tsv(other, text_column="text").classes == ("0", "1", "2")
    bare = tc.load_glue_tsv(write(tmp_path / "bare.tsv", "0\tbad film\n1\tgood film\n"))
    assert bare.texts == ["bad film", "good film"] and bare.provenance["format"] == "label<TAB>text"


@pytest.mark.parametrize("body, match", [
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("sentence\tlabel\n", "header but no examples"),
    ("text\tlabel\nfine\t1\n", r":1: no column 'sentence'"),
    ("index\tsentence\n0\tno labels here\n", r"no column 'label'.*dev.tsv"),
    ("sentence\tlabel\nfine\t1\ntoo\tmany\t1\n", r":3: 3 tab-separated columns, expected 2"),
    ("sentence\tlabel\nfine\tpositive\n", r":2: label 'positive' is not an integer"),
    ("sentence\tlabel\nfine\t-1\n", r":2: label '-1' is not an integer"),
    ("sentence\tlabel\n  \t1\n", r":2: empty text"),
])
def test_glue_tsv_errors(tmp_path, body, match):
    path = write(tmp_path / "x.tsv", body)
    with pytest.raises(ValueError, match=match) as err:
        tc.load_glue_tsv(path)
    assert "\n" not in str(err.value) and "x.tsv" in str(err.value)


def test_glue_tsv_bad_bytes_and_missing(tmp_path):
    p = tmp_path / "b.tsv"
    p.write_bytes(b"sentence\tlabel\nfine\t1\n\xff\xfe\t0\n")
    with pytest.raises(ValueError, match=r"b.tsv:3: not UTF-8"):
        tc.load_glue_tsv(str(p))
    with pytest.raises(ValueError, match="no such file"):
        tc.load_glue_tsv(str(tmp_path / "none.tsv"))
    with pytest.raises(ValueError, match="no such directory"):
        tc.sst_dir(str(tmp_path / "none"))


# ---------------------------------------------------------------- tokenizers
def test_hash_tokenizer_ids_are_crc32():
    tok = HashTokenizer(1000)
    expect = zlib.crc32(b"reweighting") % 996 + 4
    assert tok.token_ids("Reweighting") == [expect]
    assert tok.tokenize("self.foo_bar(x)!") == ["self", ".", "foo", "_", "bar", "(", "x", ")", "!"]
    assert tok.tokenize("Café") == ["cafe"] and HashTokenizer(1000, lowercase=False).tokenize("Café") == ["Café"]
    ids = np.array(tok.token_ids("many different words appear in this line of text"))
    assert ids.min() >= 4 and ids.max() < 1000


def test_encode_pads_truncates_and_masks():
    tok = HashTokenizer(50)
    ids, mask = tok.encode(["a b c d e f", "a", ""], seq_len=4)
    assert ids.shape == (3, 4) and ids.dtype == np.int64 and mask.dtype == np.float32
    assert (ids[:, 0] == tok.cls_id).all()
    a, b, c = (tok.word_id(w) for w in "abc")
    assert ids[0].tolist() == [2, a, b, c] and mask[0].tolist() == [1, 1, 1, 1]
    assert ids[1].tolist() == [2, a, 0, 0] and mask[1].tolist() == [1, 1, 0, 0]
    assert ids[2].tolist() == [2, 0, 0, 0] and mask[2].tolist() == [1, 0, 0, 0]
    ids, mask = tok.encode(["a b c d e f", "a"], seq_len=4, sep=True)
    assert ids[0].tolist() == [2, a, b, 3] and ids[1].tolist() == [2, a, 3, 0] and mask[1].sum() == 3
    with pytest.raises(ValueError, match="seq_len must be"):
        tok.encode(["a"], seq_len=0)
    with pytest.raises(ValueError, match="vocab_size must be an integer > 4"):
        HashTokenizer(4)


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "aff", "##a", "run", "##ning", ",", "!",
         "want", "##s"]


def test_wordpiece_splits(tmp_path):
    path = write(tmp_path / "vocab.txt", "\n".join(VOCAB) + "\n")
    tok = WordPieceTokenizer.from_vocab(path)
    assert tok.vocab_size == len(VOCAB)
    assert tok.tokenize("Unaffable, running!") == ["un", "##aff", "##able", ",", "run", "##ning", "!"]
    assert tok.tokenize("wants xyz") == ["want", "##s", "[UNK]"]
    assert tok.tokenize("affa") == ["aff", "##a"]  # longest match first: "aff" before "a…" pieces
    assert tok.tokenize("unx") == ["[UNK]"]  # a word that cannot be split is one [UNK]
    ids, mask = tok.encode(["unaffable", "run"], seq_len=6, sep=True)
    assert ids.tolist() == [[2, 4, 5, 6, 3, 0], [2, 9, 3, 0, 0, 0]]
    assert mask.tolist()[1] == [1, 1, 1, 0, 0, 0]
    odd = WordPieceTokenizer(["x", "[UNK]", "[SEP]", "[PAD]", "[CLS]", "y"])  # the special ids are the vocab's
    assert odd.encode(["y z"], seq_len=5, sep=True)[0].tolist() == [[4, 5, 1, 2, 3]]
    assert make_tokenizer(None, vocab_file=path).vocab_size == len(VOCAB)
    assert isinstance(make_tokenizer(64), HashTokenizer)
    with pytest.raises(ValueError, match=f"vocab_size must be None or {len(VOCAB)}"):
        make_tokenizer(30522, vocab_file=path)
    with pytest.raises(ValueError, match=r"no \[CLS\], \[SEP\] token"):
        WordPieceTokenizer.from_vocab(write(tmp_path / "v2.txt", "[PAD]\n[UNK]\nword\n"))
    with pytest.raises(ValueError, match="no such vocabulary file"):
        WordPieceTokenizer.from_vocab(str(tmp_path / "none.txt"))


# ---------------------------------------------------------------- checkpoint
V, D, FF, P, C, LAYERS = 11, 8, 12, 9, 3, 2


def hf_state(rng, prefix="bert.", classifier=True):
    s = {f"{prefix}embeddings.word_embeddings.weight": (V, D), f"{prefix}embeddings.position_embeddings.weight": (P, D),
         f"{prefix}embeddings.token_type_embeddings.weight": (2, D), f"{prefix}embeddings.LayerNorm.weight": (D,),
         f"{prefix}embeddings.LayerNorm.bias": (D,), f"{prefix}pooler.dense.weight": (D, D),
         f"{prefix}pooler.dense.bias": (D,), f"{prefix}embeddings.position_ids": (1, P),
         "cls.predictions.bias": (V,)}
    for i in range(LAYERS):
        b = f"{prefix}encoder.layer.{i}."
        for n in ("query", "key", "value"):
            s |= {f"{b}attention.self.{n}.weight": (D, D), f"{b}attention.self.{n}.bias": (D,)}
        s |= {f"{b}attention.output.dense.weight": (D, D), f"{b}attention.output.dense.bias": (D,),
              f"{b}attention.output.LayerNorm.weight": (D,), f"{b}attention.output.LayerNorm.bias": (D,),
              f"{b}intermediate.dense.weight": (FF, D), f"{b}intermediate.dense.bias": (FF,),
              f"{b}output.dense.weight": (D, FF), f"{b}output.dense.bias": (D,),
              f"{b}output.LayerNorm.weight": (D,), f"{b}output.LayerNorm.bias": (D,)}
    if classifier:
        s |= {"classifier.weight": (C, D), "classifier.bias": (C,)}
    return {k: rng.standard_normal(shape).astype(np.float32) for k, shape in s.items()}


LAYER_KEYS = ("q_w", "q_b", "k_w", "v_w", "v_b", "o_w", "o_b", "ln1_g", "ln1_b", "ff1_w", "ff1_b", "ff2_w",
              "ff2_b", "ln2_g", "ln2_b")


def check_mapping(got, state, prefix="bert.", classifier=True):
    e = f"{prefix}embeddings."
    np.testing.assert_array_equal(got["tok_emb"], state[e + "word_embeddings.weight"])
    np.testing.assert_allclose(got["pos_emb"], state[e + "position_embeddings.weight"]
                               + state[e + "token_type_embeddings.weight"][0], rtol=1e-6)
    assert got["L1_q_w"].shape == (D, D)
    np.testing.assert_array_equal(got["L1_q_w"], state[f"{prefix}encoder.layer.1.attention.self.query.weight"].T)
    np.testing.assert_array_equal(got["L0_ff1_w"], state[f"{prefix}encoder.layer.0.intermediate.dense.weight"].T)
    assert got["L0_ff1_w"].shape == (D, FF) and got["L0_ff2_w"].shape == (FF, D) and got["L1_ff1_b"].shape == (FF,)
    np.testing.assert_array_equal(got["L1_ln1_g"], state[f"{prefix}encoder.layer.1.attention.output.LayerNorm.weight"])
    np.testing.assert_array_equal(got["pool_w"], state[f"{prefix}pooler.dense.weight"].T)
    names = {"tok_emb", "pos_emb", "emb_ln_g", "emb_ln_b", "pool_w", "pool_b"}
    names |= {f"L{i}_{k}" for i in range(LAYERS) for k in LAYER_KEYS} | ({"fc_w", "fc_b"} if classifier else set())
    assert set(got) == names and all(v.dtype == np.float32 for v in got.values())


def test_checkpoint_torch_and_npz_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    state = hf_state(rng)
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    got = checkpoint.load_bert_checkpoint(str(tmp_path / "pytorch_model.bin"), n_layers=LAYERS)
    check_mapping(got, state)
    np.testing.assert_array_equal(got["fc_w"], state["classifier.weight"].T)
    bare = hf_state(rng, prefix="", classifier=False)
    np.savez(tmp_path / "bert.npz", **bare)
    got = checkpoint.load_bert_checkpoint(str(tmp_path / "bert.npz"), n_layers=LAYERS)
    check_mapping(got, bare, prefix="", classifier=False)
    assert "fc_w" not in got  # the classifier head stays the caller's own
    one = checkpoint.load_bert_checkpoint(str(tmp_path / "bert.npz"), n_layers=1)
    assert "L0_q_w" in one and "L1_q_w" not in one


def test_checkpoint_expected_shapes(tmp_path):
    state = hf_state(np.random.default_rng(1), classifier=False)
    np.savez(tmp_path / "c.npz", **state)
    path = str(tmp_path / "c.npz")
    full = checkpoint.load_bert_checkpoint(path, LAYERS)
    shapes = {k: v.shape for k, v in full.items()} | {"pos_emb": (4, D), "fc_w": (D, C), "fc_b": (C,)}
    got = checkpoint.load_bert_checkpoint(path, LAYERS, expected=shapes)
    np.testing.assert_array_equal(got["pos_emb"], full["pos_emb"][:4])
    with pytest.raises(ValueError, match=r"tok_emb is \(11, 8\) in the checkpoint, \(12, 8\) in the model"):
        checkpoint.load_bert_checkpoint(path, LAYERS, expected=shapes | {"tok_emb": (12, D)})
    with pytest.raises(ValueError, match=r"model's parameter L2_q_w \(8, 8\) has no counterpart"):
        checkpoint.load_bert_checkpoint(path, LAYERS, expected=shapes | {"L2_q_w": (D, D)})


def test_checkpoint_errors(tmp_path):
    state = hf_state(np.random.default_rng(2))
    gone = "bert.encoder.layer.1.output.dense.weight"
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in state.items() if k != gone})
    with pytest.raises(ValueError, match=r"missing.npz: no key 'encoder.layer.1.output.dense.weight'") as err:
        checkpoint.load_bert_checkpoint(str(tmp_path / "missing.npz"), LAYERS)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"has 2 encoder layers; n_layers = 3"):
        checkpoint.load_bert_checkpoint(str(tmp_path / "missing.npz"), 3)
    bad = dict(state)
    bad["bert.encoder.layer.0.attention.self.key.weight"] = np.zeros((D, D + 1), np.float32)
    np.savez(tmp_path / "shape.npz", **bad)
    with pytest.raises(ValueError, match=r"'encoder.layer.0.attention.self.key.weight' has shape \(8, 9\), "
                                         r"expected \(8, 8\) \(d = 8"):
        checkpoint.load_bert_checkpoint(str(tmp_path / "shape.npz"), LAYERS)
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.bin: not a readable torch checkpoint"):
        checkpoint.load_bert_checkpoint(str(tmp_path / "junk.bin"), LAYERS)
    with pytest.raises(ValueError, match="unknown checkpoint format '.h5'"):
        checkpoint.load_bert_checkpoint(write(tmp_path / "w.h5", "x"), LAYERS)
    with pytest.raises(ValueError, match="no such checkpoint file"):
        checkpoint.load_bert_checkpoint(str(tmp_path / "none.bin"), LAYERS)


def test_checkpoint_safetensors_needs_its_package(tmp_path):
    try:
        import safetensors  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"needs the safetensors package \(pip install safetensors\)"):
            checkpoint.load_bert_checkpoint(write(tmp_path / "m.safetensors", "x"), LAYERS)
    else:
        with pytest.raises(ValueError, match="not a readable .safetensors file"):
            checkpoint.load_bert_checkpoint(write(tmp_path / "m.safetensors", "x"), LAYERS)
