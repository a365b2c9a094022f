"""Recommendation: metrics, split protocol, id maps, bad tables, models (tiny generated data; no shared data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from danlu.data.interactions import load_id_maps, read_interactions
from danlu.errors import DanluError, DataError
from danlu.recommend.metrics import evaluate_ranking
from danlu.recommend.split import split_interactions


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def test_metrics_match_a_hand_computed_example():
    scores = np.array([[9.0, 5, 4, 3, 2, 1]])
    known, test = _csr([[0]], 6), _csr([[2, 4]], 6)
    counts = np.array([10.0, 1, 1, 1, 1, 1])  # item 0 is the top-10 % item
    m, extra = evaluate_ranking(lambda us: scores[us], known, test, [2, 4], counts)
    # ranking after masking item 0: 1, 2, 3, 4, 5; the test items sit at positions 2 and 4
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["hr@2"] == 1.0
    assert m["recall@4"] == pytest.approx(1.0)
    assert m["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert m["mrr"] == pytest.approx(0.5)
    assert m["coverage@2"] == pytest.approx(2 / 6)
    assert m["pop_share@2"] == 0.0  # the only popular item is known, so masked
    assert extra["recall_curve"] == pytest.approx([0, 0.5, 0.5, 1.0])


def _reference(scores, known, test, ks, counts):
    """The definitions written out per user, with Python lists."""
    n_users, n_items = scores.shape
    popular = set(sorted(range(n_items), key=lambda i: (-counts[i], i))[:max(1, round(n_items * 0.1))])
    out = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hr", "coverage", "pop_share")}
    out["mrr"], seen, users = 0.0, {k: set() for k in ks}, 0
    for u in range(n_users):
        kn, tr = set(known[u].indices), set(test[u].indices)
        if not kn or not tr:
            continue
        users += 1
        ranked = sorted((i for i in range(n_items) if i not in kn), key=lambda i: (-scores[u, i], i))
        for k in ks:
            top = ranked[:k]
            hits = [i in tr for i in top]
            out[f"recall@{k}"] += sum(hits) / len(tr)
            out[f"hr@{k}"] += float(any(hits))
            dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
            out[f"ndcg@{k}"] += dcg / sum(1 / math.log2(r + 2) for r in range(min(k, len(tr))))
            seen[k] |= set(top)
            out[f"pop_share@{k}"] += sum(i in popular for i in top) / k
        out["mrr"] += 1 / (1 + next(r for r, i in enumerate(ranked) if i in tr))
    for key in out:
        if key.startswith("coverage"):
            out[key] = len(seen[int(key.split("@")[1])]) / n_items
        else:
            out[key] /= users
    return out


def test_metrics_match_a_reference_implementation_on_random_data():
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 60
    inter = rng.random((n_users, n_items)) < 0.15
    split = rng.random((n_users, n_items)) < 0.3
    known, test = sp.csr_matrix(inter & ~split), sp.csr_matrix(inter & split)
    scores = rng.integers(0, 8, size=(n_users, n_items)).astype(float)  # many ties: the tie rule is tested too
    counts = np.asarray(known.sum(0)).ravel()
    got, _ = evaluate_ranking(lambda us: scores[us], known, test, [5, 10], counts, batch=7)
    want = _reference(scores, known, test, [5, 10], counts)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("seed", range(20))
def test_temporal_split_never_trains_on_a_later_interaction_than_a_test_one(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    users = rng.integers(0, int(rng.integers(2, 30)), size=n)
    times = rng.integers(0, 50, size=n)  # coarse: many equal times
    s = split_interactions(users, times, "temporal", float(rng.uniform(0.1, 0.4)), float(rng.uniform(0, 0.3)), seed)
    assert len(s.train) + len(s.val) + len(s.test) == n
    assert not set(s.train) & set(s.test) and not set(s.val) & set(s.test) and not set(s.train) & set(s.val)
    for u in np.unique(users):
        tr = times[s.train][users[s.train] == u]
        va = times[s.val][users[s.val] == u]
        te = times[s.test][users[s.test] == u]
        if len(te):
            assert tr.size == 0 or tr.max() <= te.min()
            assert va.size == 0 or va.max() <= te.min()
        if len(va) and len(tr):
            assert tr.max() <= va.min()


def test_leave_last_one_out_holds_the_last_interaction():
    users = np.array([0, 0, 0, 0, 1, 1, 1])
    times = np.array([5, 1, 9, 3, 2, 8, 4])
    s = split_interactions(users, times, "leave_last_one_out", 0.2, 0.1)
    assert sorted(s.test.tolist()) == [2, 5] and sorted(s.val.tolist()) == [0, 6]
    r = split_interactions(users, None, "random", 0.2, 0.1)
    assert "leaks the future" in r.description
    with pytest.raises(DataError, match="no timestamps"):
        split_interactions(users, None, "temporal", 0.2, 0.1)


def _write(tmp_path, text, name="events.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_id_maps_round_trip_with_string_ids(tmp_path):
    rows = ["user_id,item_id,rating"] + [f"{u},{i},4" for u in ("ann", "李雷", "007", "7") for i in ("x", "é", "42.0")]
    data = read_interactions(_write(tmp_path, "\n".join(rows)))
    assert data.user_map.ids == ["ann", "李雷", "007", "7"]  # "007" and "7" are different users
    assert data.item_map.ids == ["x", "é", "42"]  # 42.0 and 42 are one id
    (tmp_path / "id_maps.json").write_text(data.id_maps_json(), encoding="utf-8")
    users, items = load_id_maps(tmp_path / "id_maps.json")
    assert users.ids == data.user_map.ids and items.ids == data.item_map.ids
    assert all(users.get(u) == k for k, u in enumerate(data.user_map.ids))
    assert items.get(42) == 2 and items.get("nope") is None


def test_duplicates_are_merged_with_a_note(tmp_path):
    data = read_interactions(_write(tmp_path, "user,item,rating,timestamp\n1,a,2,10\n1,a,4,30\n2,a,5,5\n1,b,3,1\n"))
    assert len(data) == 3
    row = [k for k in range(3) if data.user_map.ids[data.users[k]] == "1" and data.item_map.ids[data.items[k]] == "a"]
    assert data.ratings[row[0]] == 3.0 and data.times[row[0]] == 30
    assert any("duplicate" in n for n in data.notes)


def test_blank_ratings_are_interactions_without_a_rating_and_names_are_matched_loosely(tmp_path):
    # a messy export: 'Customer ID' / 'Product' headers, ';' delimiter, blank and padded ratings, a duplicate
    text = "\ufeffCustomer ID;Product;Stars\nu1;a;5\nu1;b;\nu2;a; 2 \nu2;b;NA\nu2;b;\nu3;a;4\n"
    data = read_interactions(_write(tmp_path, text))
    assert data.notes[0].startswith("columns: user 'Customer ID', item 'Product', rating 'Stars'")
    assert any("3 row(s) have no rating" in n for n in data.notes)
    rows = zip(data.users, data.items, data.ratings, strict=True)
    rated = {(data.user_map.ids[u], data.item_map.ids[i]): r for u, i, r in rows}
    assert rated[("u1", "a")] == 5 and rated[("u2", "a")] == 2 and rated[("u3", "a")] == 4
    assert np.isnan(rated[("u1", "b")]) and np.isnan(rated[("u2", "b")])  # the duplicate pair stays unrated
    with pytest.raises(DataError, match="outside the declared scale"):  # known ratings are still checked
        read_interactions(_write(tmp_path, text.replace(" 2 ", "9")), rating_scale=(1, 5))


@pytest.mark.parametrize("text,scale,match", [
    ("user,item,rating\n1,a,4\n1,b,7\n2,a,1\n", (1, 5), "outside the declared scale"),
    ("user,item,rating\n1,a,4\n,b,3\n2,a,1\n", None, "empty user id"),
    ("user,item,rating\n1,a,4\n1,,3\n", None, "empty item id"),
    ("user,item,rating\n1,a,4\n1,b,x\n", None, "not a number"),
    ("who,what\n1,a\n", None, "no user column"),
])
def test_bad_tables_get_clear_errors(tmp_path, text, scale, match):
    with pytest.raises(DataError, match=match):
        read_interactions(_write(tmp_path, text), rating_scale=scale)


def test_an_all_unique_user_column_is_refused(tmp_path):
    rows = ["user,item"] + [f"u{k},{k % 7}" for k in range(60)]
    with pytest.raises(DataError, match="probably not the user column"):
        read_interactions(_write(tmp_path, "\n".join(rows)))


def test_an_item_table_missing_items_is_refused(tmp_path):
    from danlu.data.interactions import attach_item_table

    data = read_interactions(_write(tmp_path, "user,item\n1,a\n1,b\n2,c\n"))
    table = _write(tmp_path, "item,title,genres\na,Alpha,Drama\nb,Beta,Comedy|Drama\n", "items.csv")
    with pytest.raises(DataError, match="lacks 1 item"):
        attach_item_table(data, table)


def test_tsv_and_detected_columns(tmp_path):
    data = read_interactions(_write(tmp_path, "UserId\tMovieId\tScore\tts\n1\t10\t3.5\t100\n1\t11\t4\t200\n",
                                    "r.tsv"))
    assert data.notes[0] == "columns: user 'UserId', item 'MovieId', rating 'Score', time 'ts'"
    assert data.ratings.tolist() == [3.5, 4.0] and data.times.tolist() == [100, 200]


def test_ease_dual_form_equals_the_closed_form():
    from danlu.models.recommenders import EASE

    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((25, 40)) < 0.2).astype(float))
    model = EASE(25, 40, l2=3.0)
    model.fit(x)
    gram = (x.T @ x).toarray() + 3.0 * np.eye(40)
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0)
    assert np.abs(model.score(np.arange(25), x) - x.toarray() @ b).max() < 1e-5


def test_two_tower_scores_a_new_item_from_its_features():
    import torch

    from danlu.models.recommenders import TwoTower

    model = TwoTower(3, 4, dim=8, n_genres=3, n_years=3, n_tokens=5)
    model.set_features((np.array([1, 2, 1, 2, 0]), np.array([0, 1, 3, 4])), np.array([1, 2, 1, 0]),
                       (np.array([1, 2, 3, 4]), np.array([0, 1, 2, 3])))
    users = model.user_vectors(np.array([0, 1]), sp.csr_matrix((2, 4)))
    new = model.score_new_items(users, (torch.tensor([1, 2]), torch.tensor([0])), torch.tensor([1]),
                                (torch.tensor([3]), torch.tensor([0])))
    assert new.shape == (2, 1) and torch.isfinite(new).all()


def test_two_tower_ials_maps_features_onto_the_item_vectors():
    """model.loss=ials for two_tower: the catalogue keeps its iALS vectors exactly (id + side part), the feature
    regression lowers its loss, and a new item scores from its features alone (near its look-alikes)."""
    import torch

    from danlu.models.recommenders import TwoTower
    from danlu.recommend.feature_map import clear_side, map_features
    from danlu.recommend.ials import fit_ials

    rng = np.random.default_rng(0)
    n_users, n_items = 30, 12
    genre = rng.integers(1, 4, n_items)  # items of a genre are liked by the same users
    dense = (rng.random((n_users, n_items)) < 0.15 + 0.6 * (genre[None, :] == 1 + np.arange(n_users)[:, None] % 3))
    dense[:, 11] = False  # item 11: no interactions (it stands for a new item)
    x = sp.csr_matrix(dense.astype(np.float32))
    model = TwoTower(n_users, n_items, dim=4, n_genres=4, n_years=2, n_tokens=2)
    model.set_features((genre, np.arange(n_items)), np.zeros(n_items, dtype=np.int64),
                       (np.zeros(n_items, dtype=np.int64), np.arange(n_items)))
    clear_side(model)
    fit_ials(model, x, epochs=3, alpha=0.1, reg=0.01, nu=1.0, seed=0, validate=None, say=lambda *_: None)
    assert torch.equal(model.item_vectors(), model.item.weight)  # the side part is silent while iALS fits
    ials = model.item.weight.detach().clone()
    known = torch.from_numpy(np.asarray(x.sum(0)).ravel() > 0)
    info = map_features(model, known, steps=200, lr=0.05)
    assert info["loss"] < 0.5 * info["first_loss"] and info["loss"] < 0.5 * info["zero_loss"]
    with torch.no_grad():
        vectors = model.item_vectors()
        side = model.side_vectors()
    assert torch.allclose(vectors, ials, atol=1e-5) and torch.equal(ials[11], torch.zeros(4))  # iALS's scores
    same_genre = int(np.flatnonzero(genre == genre[11])[0])  # the item outside the fit gets its genre's vector
    assert torch.allclose(side[11], side[same_genre], atol=1e-6)
    users = model.user_vectors(np.arange(n_users), x)
    new = model.score_new_items(users, (torch.tensor([int(genre[11])]), torch.tensor([0])), torch.tensor([0]),
                                (torch.tensor([0]), torch.tensor([0]))).ravel()
    assert torch.allclose(new, users @ side[11], atol=1e-5)
    fan = int(genre[11]) - 1  # users with user % 3 == genre − 1 like that genre: the new item ranks for them
    assert new[fan::3].mean() > new[[u for u in range(n_users) if u % 3 != fan]].mean()


def test_recipe_block_is_validated():
    from danlu.recipe import load_recipe

    base = {"name": "x", "data": {"name": "movielens"}, "model": {"name": "ease"}}
    assert load_recipe(base=base, overrides=["recommend.implicit=rating >= 4"]).recommend.threshold() == 4.0
    with pytest.raises(DanluError, match="threshold"):
        load_recipe(base=base, overrides=["recommend.implicit=good ones"])
    with pytest.raises(DanluError, match="item_knn"):
        load_recipe(base={**base, "model": {"name": "eas"}})


def test_parquet_tables_read_like_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"user_id": [7, 7, 8], "item_id": ["a", "b", "a"], "rating": [4.0, 2.5, 5.0],
                             "timestamp": [10, 20, 30]}), tmp_path / "r.parquet")
    data = read_interactions(tmp_path / "r.parquet", rating_scale=(0.5, 5))
    assert data.user_map.ids == ["7", "8"] and data.item_map.ids == ["a", "b"]
    assert data.ratings.tolist() == [4.0, 2.5, 5.0] and data.times.tolist() == [10, 20, 30]


def test_two_tower_side_features_tokenize_chinese_titles_by_character():
    from danlu.recommend.build import encode_items, side_features

    info = {"title": ["大话西游", "西游降魔篇", "无间道"], "genres": [["喜剧"], ["奇幻", "喜剧"], []],
            "year": [1995, 2013, None]}
    f = side_features(info)
    assert f["tokenizer"] == "char" and "西" in f["tokens"] and f["genres"] == ["喜剧", "奇幻"]
    (g_idx, g_off), years, (t_idx, t_off) = encode_items(f, info["title"], info["genres"], info["year"])
    assert years.tolist()[2] == 0 and len(t_off) == 3 and len(g_off) == 3 and g_idx[-1] == 0  # none: "unknown"
