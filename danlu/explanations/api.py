"""``danlu.explanations``: load a run, attribute its predictions, and (optionally) write the pictures.

One ``Explainer`` serves the CLI, the Python API, the server and the top-losses view: it takes inputs as
``Predictor.predict`` does (so whatever predict refuses is refused the same way), or tensors already
encoded (a split's examples), and returns one record per input with the raw attribution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from danlu.errors import DanluError, DataError
from danlu.explanations.fit import NAMES, choose_method, target_index
from danlu.explanations.records import _stem, caption, public_row

COMPLETENESS_TOLERANCE = 0.05  # IG's |sum of attributions - (f(x) - f(baseline))| / |f(x) - f(baseline)|
CHUNK = 32  # inputs attributed at a time


class Explainer:
    def __init__(self, predictor: Any, method: str = "auto", steps: int | None = None):
        self.predictor = predictor
        self.requested = method  # --global: auto means permutation importance, a named method its attributions
        self.schema = predictor.schema
        self.model_name = predictor.recipe.model.name
        self.method = choose_method(method, self.model_name, self.schema.kind, predictor.recipe.model.options)
        self.steps = steps
        self._baseline: torch.Tensor | None = None

    @classmethod
    def load(cls, run: str | Path, method: str = "auto", runs_dir: Path | None = None,
             steps: int | None = None) -> Explainer:
        from danlu.explanations.fit import KIND_METHODS
        from danlu.predictor import Predictor
        from danlu.prepare import load_run

        if method != "auto":  # refuse a wrong method before the model loads
            _, recipe, schema = load_run(run, runs_dir)
            choose_method(method, recipe.model.name, schema.kind, recipe.model.options)
            assert schema.kind in KIND_METHODS
        return cls(Predictor.load(run, runs_dir), method, steps)

    @property
    def method_name(self) -> str:
        return NAMES[self.method]

    # ------------------------------------------------------------------ targets and outputs

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor.forward(x)

    def _targets(self, outputs: torch.Tensor, target: int | None) -> torch.Tensor:
        if target is not None:
            return torch.full((len(outputs),), target, dtype=torch.long)
        if self.schema.task == "classification":
            return outputs.argmax(1)
        return torch.zeros(len(outputs), dtype=torch.long)  # the first regression target

    def _head(self, outputs: torch.Tensor, targets: torch.Tensor, names: list[Any], top_k: int) -> list[dict]:
        rows = self.predictor.format(outputs, names, top_k)
        labels = self.schema.classes if self.schema.task == "classification" else (self.schema.targets or ["value"])
        for row, out, t in zip(rows, outputs, targets.tolist(), strict=True):
            row["method"] = self.method
            row["target"] = {"label": labels[t], ("probability" if self.schema.task == "classification"
                                                  else "value"): round(float(out[t]), 6)}
        return rows

    def _completeness(self, row: dict, total: float, delta: float | None) -> None:
        if delta is None:
            return
        change = total - delta  # captum: delta = sum(attr) - (f(x) - f(baseline))
        rel = abs(delta) / max(abs(change), 1e-6)
        row["convergence_delta"] = round(float(delta), 6)
        row["completeness_error"] = round(float(rel), 6)
        if rel > COMPLETENESS_TOLERANCE and abs(change) > 1e-3:
            row["warning"] = (f"integrated gradients are off by {rel:.0%} of f(x) - f(baseline); "
                              "more steps (--steps) give a more faithful map")

    # ------------------------------------------------------------------ per kind

    def baseline(self) -> torch.Tensor:
        if self._baseline is None:
            kind = self.schema.kind
            if kind == "image":
                from danlu.explanations.images import black_baseline

                self._baseline = black_baseline(self.predictor.normalize, tuple(self.schema.input_shape))
            elif kind == "tabular":
                from danlu.explanations.tables import training_mean

                self._baseline = training_mean(self.schema, None)
        return self._baseline

    def set_table_baseline(self, train_x: torch.Tensor) -> None:
        from danlu.explanations.tables import training_mean

        self._baseline = training_mean(self.schema, train_x)

    def images(self, pixels: torch.Tensor, names: list[Any], target: int | None = None,
               top_k: int = 3) -> list[dict]:
        """Records for uint8 images [N, C, H, W]: ``map`` (signed [H, W] numpy) and ``pixels`` beside the rest."""
        from danlu.explanations.images import IG_STEPS, attribute_images

        records = []
        for start in range(0, len(pixels), CHUNK):
            px = pixels[start:start + CHUNK]
            x = self.predictor.normalize(px)
            outputs = self._outputs(x)
            targets = self._targets(outputs, target)
            maps, deltas = attribute_images(self.predictor.model, x, targets, self.method, model_name=self.model_name,
                                            baseline=self.baseline(), steps=self.steps or IG_STEPS)
            rows = self._head(outputs, targets, names[start:start + CHUNK], top_k)
            for i, row in enumerate(rows):
                m = maps[i].float().numpy()
                self._completeness(row, float(m.sum()), None if deltas is None else float(deltas[i]))
                row["map"], row["pixels"] = m, px[i].numpy()
                records.append(row)
        return records

    def _token_strings(self, texts: list[str] | None, ids: torch.Tensor) -> list[list[str]]:
        enc = self.predictor._text_encoder
        if enc.pretrained is not None:
            tok = enc.pretrained.tokenizer
            return [tok.convert_ids_to_tokens(row.tolist()) for row in ids]
        if texts is not None:  # the user's own tokens (an unknown one shows as typed, not as <unk>)
            return [t[:ids.size(1)] for t in enc.tokens(texts)]
        return [[enc.vocab.itos[i] for i in row.tolist()] for row in ids]

    def _special_ids(self) -> set[int]:
        enc = self.predictor._text_encoder
        if enc.pretrained is not None:
            return set(int(i) for i in enc.pretrained.tokenizer.all_special_ids)
        return set()

    def texts(self, ids: torch.Tensor, names: list[Any], texts: list[str] | None = None,
              target: int | None = None, top_k: int = 3) -> list[dict]:
        """Records for padded ids [N, L]: ``tokens`` = [(token, score)] in text order, special tokens left out."""
        from danlu.explanations.text import TEXT_STEPS, attribute_tokens, min_width, trim

        pad = self.predictor._text_encoder.pad_id
        special = self._special_ids()
        model = self.predictor.model
        records = []
        for start in range(0, len(ids), CHUNK):
            part = trim(ids[start:start + CHUNK], pad, min_width(model))
            outputs = self._outputs(part)
            targets = self._targets(outputs, target)
            scores, deltas = attribute_tokens(model, part, targets, pad_id=pad, special_ids=special,
                                              steps=self.steps or TEXT_STEPS)
            strings = self._token_strings(texts[start:start + CHUNK] if texts is not None else None, part)
            rows = self._head(outputs, targets, names[start:start + CHUNK], top_k)
            for i, row in enumerate(rows):
                pairs = [(str(tok), round(float(s), 6))
                         for tok, s, t in zip(strings[i], scores[i].tolist(), part[i].tolist(), strict=False)
                         if t != pad and t not in special]
                self._completeness(row, float(scores[i].sum()), float(deltas[i]))
                row["tokens"] = pairs
                records.append(row)
        return records

    def rows(self, x: torch.Tensor, names: list[Any], target: int | None = None, top_k: int = 3) -> list[dict]:
        """Records for encoded rows [N, W]: ``features`` = [(column, attribution)] in the schema's order."""
        from danlu.explanations.tables import attribute_rows, column_groups

        columns, groups = column_groups(self.schema)
        records = []
        for start in range(0, len(x), CHUNK):
            part = x[start:start + CHUNK]
            outputs = self._outputs(part)
            targets = self._targets(outputs, target)
            attr, deltas = attribute_rows(self.predictor.model, part, targets, self.method, baseline=self.baseline(),
                                          groups=groups, n_columns=len(columns))
            rows = self._head(outputs, targets, names[start:start + CHUNK], top_k)
            for i, row in enumerate(rows):
                self._completeness(row, float(attr[i].sum()), None if deltas is None else float(deltas[i]))
                row["features"] = [(c, round(float(v), 6)) for c, v in zip(columns, attr[i].tolist(), strict=True)]
                records.append(row)
        return records

    def clips(self, x: torch.Tensor, names: list[Any], target: int | None = None, top_k: int = 3) -> list[dict]:
        """Records for waveforms [N, samples]: ``map`` = [bands, windows] time-frequency occlusion scores and
        ``spectrogram`` (the log-mel, for the picture)."""
        from danlu.explanations.audio import occlusion
        from danlu.models.audio_features import LogMel

        rate = int(self.schema.audio["sample_rate"])
        logmel = LogMel(rate, n_fft=512, win_length=int(0.025 * rate), hop=rate // 100, n_mels=64)
        records = []
        for start in range(0, len(x), CHUNK):
            part = x[start:start + CHUNK]
            outputs = self._outputs(part)
            targets = self._targets(outputs, target)
            maps = occlusion(self.predictor.model, part, targets, rate)
            specs = logmel(part)
            for i, row in enumerate(self._head(outputs, targets, names[start:start + CHUNK], top_k)):
                row["map"], row["spectrogram"] = maps[i].numpy(), specs[i].numpy()
                records.append(row)
        return records

    # ------------------------------------------------------------------ user inputs

    def explain(self, inputs: Any, target: Any = None, top_k: int = 3, skipped: list[str] | None = None,
                labels: list[Any] | None = None) -> list[dict]:
        """Records for inputs as ``Predictor.predict`` takes them (files, folders, bytes, texts, rows, CSVs)."""
        from danlu.predictor import expand_image_items, input_labels, tabular_rows

        if isinstance(inputs, str | bytes | Path) or not hasattr(inputs, "__iter__"):
            inputs = [inputs]
        items = list(inputs)
        if not items:
            raise DanluError("nothing to explain", hint="give at least one input")
        if top_k < 1:
            raise DanluError(f"top_k must be at least 1, got {top_k}")
        t = target_index(target, self.schema)
        kind = self.schema.kind
        if kind == "image":
            items, labels = expand_image_items(items, labels)
            names = list(labels) if labels is not None else input_labels(items)
            kept, pixels, problems = self.predictor.readable_images(items)
            if skipped is not None:
                skipped.extend(problems)
            if not kept:
                raise DataError(f"none of the {len(items)} image(s) could be read",
                                hint="give JPEG, PNG, GIF, BMP or WebP files")
            return self.images(pixels, [names[i] for i in kept], t, top_k)
        if kind == "audio":
            names = list(labels) if labels is not None else input_labels(items)
            return self.clips(self.predictor.audio_tensor(items), names, t, top_k)
        if kind == "tabular":
            items, names = tabular_rows(items, labels)
            return self.rows(self.predictor.tabular_tensor(items), names, t, top_k)
        names = list(labels) if labels is not None else input_labels(items)
        ids = self.predictor.text_tensor(items)
        return self.texts(ids, names, [s.strip() for s in items], t, top_k)


# ---------------------------------------------------------------------- writing


def write_outputs(records: list[dict], kind: str, out: Path, method: str,
                  audio: dict[str, Any] | None = None) -> list[dict]:
    """One PNG per image or table row (tokens.html for texts) under ``out``, and explanations.json; returns
    the JSON rows (paths relative to ``out``, no raw arrays)."""
    from danlu.explanations import render
    from danlu.runs.files import atomic_write_text, write_json

    out.mkdir(parents=True, exist_ok=True)
    rows, html_rows = [], []
    audio_seconds, audio_rate = float((audio or {}).get("seconds", 1.0)), int((audio or {}).get("sample_rate", 16000))
    for i, rec in enumerate(records):
        row = public_row(rec)
        cap = caption(rec)
        if kind == "image":
            name = f"{i:03d}-{_stem(rec['input'])}.png"
            render.image_figure(rec["pixels"], render.display_map(rec["map"], method), cap, out / name)
            row["map"] = name
        elif kind == "audio":
            from danlu.explanations.audio import figure

            name = f"{i:03d}-{_stem(rec['input'])}.png"
            figure(rec["spectrogram"], rec["map"], cap, audio_seconds, audio_rate, out / name)
            row["map"] = name
        elif kind == "tabular":
            name = f"{i:03d}-{_stem(rec['input'])}.png"
            cols, vals = zip(*rec["features"], strict=True)
            render.bars_figure(list(cols), list(vals), cap, out / name)
            row["chart"] = name
        else:
            from danlu.explanations.text import html_spans

            html_rows.append((f"{rec['input']} — {cap}", html_spans(rec["tokens"])))
            row["html"] = "tokens.html"
        rows.append(row)
    if html_rows:
        atomic_write_text(out / "tokens.html", render.text_html(html_rows, "token attributions"))
    write_json(out / "explanations.json", {"method": method, "explanations": rows})
    return rows


def explain(run: str | Path, inputs: Any = None, *, method: str = "auto", target: Any = None, top_k: int = 3,
            out: str | Path | None = None, runs_dir: Path | None = None, data_dir: Path | None = None,
            steps: int | None = None, top_losses: int | None = None, global_importance: bool = False,
            skipped: list[str] | None = None) -> dict[str, Any]:
    """Explain a run's predictions. ``inputs`` as for ``danlu.predict``; or ``top_losses=K`` for the K
    validation examples it got most wrong; or ``global_importance=True`` for a table model's columns on
    the validation split. With ``out`` the pictures and explanations.json are written there.

    Returns {"run", "method", "explanations": [...]} where each explanation keeps its raw attribution
    (``map`` numpy [H, W] for images, ``tokens`` or ``features`` as (name, score) pairs)."""
    explainer = Explainer.load(run, method, runs_dir, steps)
    schema = explainer.schema
    result: dict[str, Any] = {"run": str(explainer.predictor.run_dir), "method": explainer.method}
    if global_importance:
        from danlu.explanations.views import global_importance as run_global

        result.update(run_global(explainer, data_dir, Path(out) if out else None))
        return result
    if top_losses is not None:
        from danlu.explanations.views import top_losses as run_top_losses

        result.update(run_top_losses(explainer, top_losses, data_dir, Path(out) if out else None, top_k))
        return result
    if inputs is None:
        raise DanluError("nothing to explain", hint="give inputs, or top_losses=K, or global_importance=True")
    if schema.kind == "tabular" and (schema.categories or schema.table) and explainer.method not in (
            "saliency", "tree_shap"):
        from danlu.explanations.views import train_split_x

        x = train_split_x(explainer, data_dir)
        if x is not None:
            explainer.set_table_baseline(x)
    records = explainer.explain(inputs, target, top_k, skipped)
    result["explanations"] = records
    if schema.kind == "audio":
        result["audio"] = schema.audio  # the pictures' time axis
    if out is not None:
        result["files"] = write_outputs(records, schema.kind, Path(out), explainer.method, schema.audio)
        result["out"] = str(out)
    return result
