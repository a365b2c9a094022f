"""Pydantic models that document the HTTP API in OpenAPI (/docs); requests themselves are parsed by inputs.py."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

Value = float | str | None


class PredictBody(BaseModel):
    inputs: list[str | list[Value] | dict[str, Value]] = Field(
        description="base64 images or data URLs (image runs), texts (text runs), or feature rows as lists in "
                    "column order or objects keyed by column name (tabular runs)")
    top_k: int = Field(3, ge=1, description="how many classes to return per input")


class Scored(BaseModel):
    label: str
    probability: float


class PredictionRow(BaseModel):
    input: Any = Field(description="the input's name: file name, 'input N', the text, or the feature row")
    top: list[Scored] | None = Field(None, description="classification: the top_k classes, most probable first")
    prediction: dict[str, float] | None = Field(None, description="regression: value per target")


class PredictResponse(BaseModel):
    predictions: list[PredictionRow]


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong")
    detail: Any = Field(None, description="more about it: a hint, or the expected columns")


UPLOAD_SCHEMA = {
    "type": "object",
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                   "top_k": {"type": "integer", "default": 3}},
    "required": ["files"],
}

PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictBody.model_json_schema(),
                                 "example": {"inputs": ["data:image/png;base64,iVBORw0KGgo..."], "top_k": 3}},
            "multipart/form-data": {"schema": UPLOAD_SCHEMA},
        },
    }
}

ERRORS = {401: {"model": ErrorBody, "description": "API key missing or wrong"},
          413: {"model": ErrorBody, "description": "request body over the limit"},
          422: {"model": ErrorBody, "description": "input the model cannot take; the error says which and why"},
          503: {"model": ErrorBody, "description": "shutting down"}}
