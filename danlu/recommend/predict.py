"""Top-k from a recommendation run folder: a known user, a new user folded in from a few items, or (for an
unknown user) popularity with a note. Seen items are never recommended."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from danlu.data.interactions import item_label, load_id_maps
from danlu.errors import DanluError, RunError


def load_state(model: Any, path: Path) -> None:
    """Weights from safetensors; buffers whose size depends on the data (EASE's item lists, the two-tower's
    feature lists) take the saved shape, parameters must match."""
    from safetensors.torch import load_file

    from danlu.runs.files import check_run_file

    check_run_file(path, within=path.parent)  # a regular file in the run folder: not a FIFO, device or link out
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors' own error types for a damaged file
        raise RunError(f"{path} is damaged ({type(e).__name__}: {str(e)[:120]})",
                       hint="train the run again") from None
    own = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    missing = [k for k in [*own, *buffers] if k not in tensors]
    if missing:
        raise RunError(f"{path} lacks {missing[:3]}", hint="the weights are from another model; train the run again")
    for name, t in tensors.items():
        owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        attr = name.rpartition(".")[2]
        if name in buffers:
            owner._buffers[attr] = t
        elif name in own:
            if own[name].shape != t.shape:
                raise RunError(f"{path}: {name} has shape {tuple(t.shape)}, the model {tuple(own[name].shape)}",
                               hint="the weights are from another recipe; train the run again")
            own[name].data.copy_(t)


class RecommenderRun:
    """A trained recommendation run, loaded once and asked many times (CLI and server)."""

    def __init__(self, run_dir: Path):
        from danlu.recipe import load_recipe
        from danlu.recommend.build import build, with_features
        from danlu.recommend.store import load_history
        from danlu.runs.files import read_json
        from danlu.runs.store import read_run_recipe

        self.run_dir = Path(run_dir)
        self.recipe = load_recipe(base=read_run_recipe(self.run_dir))
        self.schema = read_json(self.run_dir / "schema.json")
        self.users, self.items = load_id_maps(self.run_dir / "id_maps.json")
        self.item_info = read_json(self.run_dir / "items.json")
        features = self.schema.get("features")
        self.model = with_features(build(self.recipe, len(self.users), len(self.items), features), features,
                                   self.item_info, len(self.items))
        load_state(self.model, self.run_dir / "model.safetensors")
        self.model.eval()
        self.model.warm()
        self.history = load_history(self.run_dir, len(self.items))
        if hasattr(self.model, "set_graph"):  # LightGCN: the known interactions are its graph
            self.model.set_graph(self.history)
        self.counts = np.asarray(self.history.sum(0)).ravel()
        self.index = self._item_index()

    def _item_index(self) -> Any:
        """recommend.index: None (every item scored) or the faiss index over the item vectors (index.py)."""
        from danlu.recommend import index
        from danlu.recommend.data import config_of

        cfg = config_of(self.recipe)
        if not index.wanted(cfg.index, len(self.items), self.recipe.model.name, hasattr(self.model, "item_vectors")):
            return None
        return index.for_model(self.model, cfg.index_probes)

    def label(self, index: int) -> str:
        return item_label(self.item_info, self.items.ids, index)

    def _item_indices(self, raw: list[Any]) -> tuple[list[int], list[str]]:
        found, unknown = [], []
        for r in raw:
            i = self.items.get(r)
            (unknown.append(str(r)) if i is None else found.append(i))
        return found, unknown

    def recommend(self, user: Any = None, items: list[Any] | None = None, k: int = 10,
                  exclude: list[Any] = ()) -> dict[str, Any]:
        """{"user", "notes", "recommendations": [{"item", "title", "score", "because"?}]}."""
        return self.answer_many([self.ask(user, items, k, exclude)])[0]

    def ask(self, user: Any = None, items: list[Any] | None = None, k: int = 10, exclude: list[Any] = ()) -> Ask:
        """A request checked and put in index space (bad ones raise DanluError here, before any batching)."""
        if k < 1:
            raise DanluError(f"k must be at least 1, got {k}")
        if (user is None) == (items is None):
            raise DanluError("give a user id or a list of items (not both)",
                             hint="danlu predict RUN --user 42, or --items 1,2,3 for a new user")
        notes: list[str] = []
        u: int | None = -1
        if user is not None:
            u = self.users.get(user)
            if u is None:
                notes.append(f"user {user!r} is not in the training data: recommending the most popular items")
                hist = np.zeros(0, dtype=np.int64)
            else:
                hist = self.history.indices[self.history.indptr[u]:self.history.indptr[u + 1]]
        else:
            found, unknown = self._item_indices(list(items))
            if unknown:
                notes.append(f"unknown item id(s) ignored: {', '.join(unknown[:10])}")
            if not found:
                raise DanluError("none of the given items is in this run's catalogue",
                                 hint=f"item ids look like: {', '.join(self.items.ids[:5])}")
            hist = np.asarray(sorted(set(found)), dtype=np.int64)
        ex, _ = self._item_indices(list(exclude))
        return Ask(user, u, np.asarray(hist, dtype=np.int64), notes, ex, int(k))

    def answer_many(self, asks: list[Ask]) -> list[dict[str, Any]]:
        """The answers to several requests, the model scoring all of them in one call (the server's batches)."""
        from danlu.recommend.metrics import rank_top

        n_items = len(self.items)
        scored = [r for r, a in enumerate(asks) if a.index is not None]
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # with an index: row → (top items, their scores)
        scores = np.zeros((len(asks), n_items), dtype=np.float64)  # one row per request, ranked together
        if scored:
            hist = [asks[r].history for r in scored]
            indptr = np.cumsum([0] + [len(x) for x in hist])
            h = sp.csr_matrix((np.ones(int(indptr[-1]), dtype=np.float32), np.concatenate(hist), indptr),
                              shape=(len(scored), n_items))
            users = np.asarray([asks[r].index for r in scored])
            if self.index is not None:  # approximate top-k: only the probed clusters are scored
                from danlu.recommend.index import top_k

                vectors = self.model.user_vectors(users, h).numpy()
                got = top_k(self.index, vectors, max(asks[r].k for r in scored),
                            [np.concatenate([asks[r].history, np.asarray(asks[r].exclude, dtype=np.int64)])
                             for r in scored])
                found = {r: (top[:asks[r].k], s[:asks[r].k]) for r, (top, s) in zip(scored, got, strict=True)}
            else:
                scores[scored] = self.model.score(users, h)
        unknown = [r for r, a in enumerate(asks) if a.index is None]
        if unknown:  # unknown users: popularity
            scores[unknown] = self.counts
        masked = [np.concatenate([a.history, np.asarray(a.exclude, dtype=np.int64)]) for a in asks]
        rows = np.repeat(np.arange(len(asks)), [len(m) for m in masked])
        scores[rows, np.concatenate(masked).astype(np.int64) if masked else rows] = -np.inf
        ranked = rank_top(scores, max(a.k for a in asks)) if asks else np.zeros((0, 0), dtype=np.int64)
        tops = []
        for r, a in enumerate(asks):  # top-k by (score, lower index) is a prefix of the top-kmax
            if r in found:
                tops.append(found[r])
                continue
            top = ranked[r, :a.k]
            top = top[np.isfinite(scores[r, top])]
            tops.append((top, scores[r, top]))
        pairs = [(a, top) for a, (top, _) in zip(asks, tops, strict=True)
                 if self.model.explains and len(a.history) and a.index is not None]  # "because you rated X"
        why = {id(a): w for (a, _), w in zip(pairs, self.model.because_many([(a.history, t) for a, t in pairs]),
                                             strict=True)} if pairs else {}
        out = []
        for a, (top, scores) in zip(asks, tops, strict=True):
            recs = []
            for r, (i, score) in enumerate(zip(top, scores, strict=True)):
                row = {"item": self.items.ids[i], "title": self.label(i), "score": round(float(score), 5)}
                j = why[id(a)][r] if id(a) in why else None
                if j is not None:
                    row["because"] = {"item": self.items.ids[j], "title": self.label(j)}
                recs.append(row)
            out.append({"user": None if a.user is None else str(a.user), "known_items": int(len(a.history)),
                        "notes": a.notes, "recommendations": recs})
        return out


@dataclass
class Ask:
    """One checked request: ``index`` is the user's row, -1 for a new user (their items), None for an unknown
    user (popularity)."""

    user: Any
    index: int | None
    history: np.ndarray
    notes: list[str]
    exclude: list[int]
    k: int


def render(result: dict[str, Any]) -> str:
    from danlu.printable import terminal_safe as safe

    lines = [f"note: {n}" for n in result["notes"]]
    for rank, r in enumerate(result["recommendations"], 1):
        why = f"  (because you rated {safe(r['because']['title'])})" if "because" in r else ""
        named = r["title"] != f"item {r['item']}"  # a title from the item table; else the id alone, once
        label = f"{safe(r['title'])}  [{safe(r['item'])}]" if named else safe(r["title"])
        lines.append(f"{rank:>3}. {label}  {r['score']:.4f}{why}")
    return "\n".join(lines)

