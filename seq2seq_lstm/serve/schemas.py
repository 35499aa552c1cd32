"""Request and response bodies: pydantic models, so FastAPI checks every field (a wrong type, an empty
or missing field is a 422 that names it) and publishes the OpenAPI schema at ``/openapi.json``.

Two APIs share the server:
- OpenNMT-py's (``/translator/...``), field for field, so its existing clients work unchanged: a list of
  ``{"src", "id"}`` in, a list over n-best ranks of lists over inputs of ``{"src", "tgt", "n_best",
  "pred_score"}`` out (``"align"``/``"align_score"`` with ``--report-align``).
- The native one (``/v1/...``): several texts and per-request search options in, parallel lists out.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

LengthPenalty = Literal["none", "gnmt", "average"]  # config.LENGTH_PENALTIES


class Strict(BaseModel):
    """No unknown fields (a typo is an error, not silently ignored), no type coercion ("3" is not 3)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# ------------------------------------------------------------------------------------- OpenNMT-py


class OnmtInput(BaseModel):
    """One sentence for OpenNMT-py's ``/translator/translate``. ``id`` is the model id (the first
    input's applies to the request, as in OpenNMT-py); its other fields (``ref``, ``feats``) are
    accepted and ignored, as OpenNMT-py ignores what it does not use."""

    model_config = ConfigDict(extra="allow", strict=True)
    src: StrictStr
    id: StrictInt = 0


class OnmtOutput(BaseModel):
    src: str
    tgt: str
    n_best: int
    pred_score: float
    align: list[str] | None = Field(None, description="Pharaoh 'src-tgt' pairs of source/target pieces")
    align_score: list[str] | None = None


# ------------------------------------------------------------------------------------- native


class SearchFields(Strict):
    """Per-request search options; a field left out keeps the server's value (``s2s serve`` options,
    else the run's ``generation`` section)."""

    beam_size: StrictInt | None = Field(None, ge=1, description="beam width; 1 = greedy")
    n_best: StrictInt | None = Field(None, ge=1, description="hypotheses per text (<= beam_size)")
    length_penalty: LengthPenalty | None = None
    alpha: StrictFloat | StrictInt | None = Field(None, ge=0, le=10)
    min_len: StrictInt | None = Field(None, ge=0, le=1000)
    max_len_a: StrictFloat | StrictInt | None = Field(None, ge=0, le=100)
    max_len_b: StrictInt | None = Field(None, ge=0, le=1000)
    no_repeat_ngram: StrictInt | None = Field(None, ge=0, le=100)
    ban_unk: StrictBool | None = None

    def overrides(self) -> dict[str, object]:
        return {k: v for k, v in self.model_dump(exclude={"text", "prefix", "model", "alignments"}).items()
                if v is not None}  # fmt: skip


class TranslateRequest(SearchFields):
    text: Annotated[list[StrictStr], Field(min_length=1, description="texts to translate, in order")]
    prefix: StrictStr | list[StrictStr | None] | None = Field(
        None, description="forced start of the translation: one for all texts, or one per text"
    )
    model: StrictInt | None = Field(None, description="model id (GET /translator/models); default: the first")
    alignments: StrictBool = Field(False, description="return each hypothesis's source index per piece")


class TranslateResponse(BaseModel):
    model: int
    translations: list[list[str]] = Field(description="per text, its n-best translations, best first")
    scores: list[list[float]]
    alignments: list[list[list[int]]] | None = Field(
        None, description="per text and hypothesis: for each target piece, the source piece it attends most"
    )


class SuggestRequest(Strict):
    text: StrictStr = Field(description="text typed so far; a trailing space asks for the next word")
    k: StrictInt | None = Field(None, ge=1, le=50, description="suggestions (default: the run's suggest_k)")
    source: StrictStr | None = Field(
        None, description="source sentence being translated (translation models)"
    )
    model: StrictInt | None = Field(
        None, description="model id; default: the first language model, else the first"
    )


class Word(BaseModel):
    word: str
    prob: float


class SuggestResponse(BaseModel):
    model: int
    text: str
    suggestions: list[Word]


class ModelStats(BaseModel):
    model_id: int
    queued: int = Field(description="sentences waiting or decoding")
    jobs: int = Field(description="requests answered")
    batches: int = Field(description="decoding calls (several requests each under load)")
    skipped: int = Field(description="requests cancelled (hang-up, timeout) before they were decoded")


class Health(BaseModel):
    status: str
    models: list[ModelStats] = []


class ErrorBody(BaseModel):
    status: Literal["error"] = "error"
    error: str
    field: str | None = None
