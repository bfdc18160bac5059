"""The FastAPI app of ``nnscratch serve``: the draw-a-digit page and its JSON API.

- ``GET /``: the page (static files shipped in the package, nothing from a CDN);
- ``GET /api/models``: the served models, with their test accuracy and confusion matrix;
- ``POST /api/predict``: ``{"model", "image": base64 PNG/JPEG}`` or ``{"model", "pixels": [[...]]}``
  -> ``{"model", "digit", "probabilities", "input"}`` (+ ``feature_maps`` when asked, for a CNN);
- ``GET /healthz``; ``GET /openapi.json``.

Every malformed request gets a 4xx with a JSON body ``{"detail": ...}``: 400 for data we cannot
use (bad base64, not a picture, wrong pixel count, NaN, out-of-range values, unknown model), 413
for a body over 1 MiB, 415 for a body that is not JSON, 422 for JSON of the wrong shape. No CORS
headers. Prediction runs in the thread pool (a model predicts from several threads at once).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..data.images import read_image_bytes
from ..errors import InputError
from .models import ServedModel

MAX_BODY = 1 << 20               # 1 MiB
IMAGE_FORMATS = ("PNG", "JPEG")


class PredictRequest(BaseModel):
    """Either ``image`` (a base64 PNG or JPEG, optionally as a ``data:`` URL) or ``pixels`` (a 2-D
    array of the model's input size in the dataset's raw scale: 0..16 for the 8x8 digits, 0..255
    for MNIST)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="a name from GET /api/models (default: the first)")
    image: str | None = Field(None, description="base64 PNG or JPEG (or a data: URL of one)")
    pixels: list[list[float]] | None = Field(None, description="H x W values in the raw scale")
    feature_maps: bool = Field(False, description="also return the first conv block's outputs (CNN)")

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        if (self.image is None) == (self.pixels is None):
            raise ValueError("give exactly one of 'image' and 'pixels'")
        return self


class Prediction(BaseModel):
    model: str
    digit: int
    probabilities: list[float] = Field(description="one per class, summing to 1")
    input: list[list[float]] = Field(description="what the network saw, H x W in [0, 1]")
    feature_maps: list[list[list[float]]] | None = Field(
        None, description="first conv block's outputs (channels x H x W), if asked; null for an MLP")


class ModelInfo(BaseModel):
    name: str
    input_shape: list[int] = Field(description="[H, W] of the model's input")
    input_format: str
    raw_max: float
    n_classes: int
    architecture: str
    dataset: str | None
    n_params: int
    test_accuracy: float | None = Field(description="from the model's run report; null without one")
    confusion_matrix: list[list[int]] | None
    report: str | None = Field(description="where the run report is, or why there is none")
    feature_maps: bool


class Error(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "data that cannot be used"},
    413: {"model": Error, "description": "body over 1 MiB"},
    415: {"model": Error, "description": "body is not JSON"},
}


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (declared or streamed), 415 for a
    POST to the API that is not JSON. Runs before anything reads the body."""

    def __init__(self, app: Any, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_error(send, 400, "invalid Content-Length")
                return
            if size > self.limit:
                await _send_error(send, 413, f"body of {size} bytes is over the {self.limit}-byte limit")
                return
        if scope["method"] == "POST" and scope["path"].startswith("/api/"):
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if ctype != b"application/json":
                await _send_error(send, 415, "send the request as application/json")
                return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, f"body over the {self.limit}-byte limit")
            return message

        await self.app(scope, limited, send)


async def _send_error(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def decode_image(text: str) -> Any:
    """base64 (or a data: URL) -> a PIL image of PNG or JPEG; InputError otherwise."""
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if not head.endswith(";base64"):
            raise InputError("image: a data: URL must be base64-encoded")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("image: not valid base64") from None
    if not data:
        raise InputError("image: is empty")
    return read_image_bytes(data, "image", IMAGE_FORMATS)


def _request_model(served: list[ServedModel]) -> type[PredictRequest]:
    """PredictRequest as this server takes it: ``model`` one of its names and, where every model
    takes pictures of one size and scale, ``pixels`` of that size and range, so that the OpenAPI
    schema says what the server accepts (the handler checks again, whatever the schema says)."""
    from typing import Annotated, Literal

    from pydantic import create_model

    names = tuple(m.name for m in served)
    fields: dict[str, Any] = {"model": (Literal[names] | None,  # type: ignore[valid-type]
                                        Field(None, description="one of the served models "
                                              "(default: the first)"))}
    sizes = {(m.input_hw, m.raw_max) for m in served}
    if len(sizes) == 1:
        ((h, w), top), = sizes
        value = Annotated[float, Field(ge=0, le=top)]
        row = Annotated[list[value], Field(min_length=w, max_length=w)]  # type: ignore[valid-type]
        fields["pixels"] = (Annotated[list[row], Field(min_length=h, max_length=h)] | None,  # type: ignore[valid-type]
                            Field(None, description=f"{h} x {w} values in 0..{top:g}, the dataset's "
                                  "raw scale"))
    return create_model("PredictRequest", __base__=PredictRequest, **fields)


def create_app(served: list[ServedModel]) -> FastAPI:
    """The app serving ``served`` (at least one model), chosen by name."""
    if not served:
        raise ValueError("create_app needs at least one model")
    by_name = {m.name: m for m in served}
    Body = _request_model(served)
    # no /docs or /redoc: their pages load scripts from a CDN; the schema is at /openapi.json
    app = FastAPI(title="nnscratch", summary="Draw a digit: the JSON API of nnscratch serve",
                  version=_version(), docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e.get(k) for k in ("type", "loc", "msg")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:  # never a traceback
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    static = resources.files("nnscratch.web") / "static"

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/healthz", summary="liveness: the models are loaded")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": len(by_name)}

    models_json = [m.describe() for m in served]

    @app.get("/api/models", response_model=list[ModelInfo], summary="the served models")
    def models() -> JSONResponse:
        return JSONResponse(models_json)

    def predict(body: PredictRequest) -> Response:
        name = body.model if body.model is not None else served[0].name
        chosen = by_name.get(name)
        if chosen is None:
            raise InputError(f"unknown model {name!r}; the models are {', '.join(by_name)}")
        if body.image is not None:
            raw = chosen.raw_from_picture(decode_image(body.image))
        else:
            raw = chosen.raw_from_pixels(body.pixels)
        answer = chosen.predict(raw, feature_maps=body.feature_maps)
        if not all(math.isfinite(p) for p in answer["probabilities"]):
            raise InputError("the model's outputs are not finite for this input")
        return JSONResponse(answer)

    predict.__annotations__["body"] = Body   # this server's names and sizes (the schema)
    app.post("/api/predict", response_model=Prediction, responses=ERRORS,
             summary="predict the digit of a picture or of raw pixels")(predict)
    return app


def _version() -> str:
    from .. import __version__

    return __version__
