"""The body of `POST /extract`: read within a deadline, parsed by hand, checked by a Pydantic model.

The JSON is parsed here rather than by FastAPI so that every way a body can be wrong ends in a
JSON 4xx: not UTF-8 or not JSON (400), nested deeper than the parser recurses (400, not a 500),
the wrong shape (422), too big (413), too slow to arrive (408).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

API_KEY_VARIABLE = "SERVE_API_KEY"


@dataclass(frozen=True)
class Settings:
    max_body_bytes: int = 1_000_000
    max_texts: int = 16  # per request
    max_chars: int = 20_000  # per text; a PubMed abstract is ~1,500-3,000 characters
    batch_window_ms: float = 15.0  # a batch closes when no request came for this long
    max_batch_texts: int = 32  # texts decoded in one extract call (x3 prompts)
    read_timeout_s: float = 10.0  # for the whole request body, however it trickles in
    head_timeout_s: float = 10.0  # for the request line and headers
    max_connections: int = 64
    api_key: str | None = field(default=None, repr=False)  # never printed with the settings
    info: tuple[tuple[str, Any], ...] = ()  # run, model, adapter: shown by /health


# Not an HTTP status a client ever sees: the client left; it only names the case in the log.
CLIENT_CLOSED = 499


class ApiError(Exception):
    """A request the service refuses: the status and the one-line message sent back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = int(status), message


def request_model(max_texts: int, max_chars: int) -> type[BaseModel]:
    """The Pydantic model of a POST /extract body under these limits (shown at /docs)."""
    from pydantic import model_validator

    text_type = Annotated[str, StringConstraints(min_length=1, max_length=max_chars)]

    class ExtractRequest(BaseModel):
        """Either "text" (one abstract) or "texts" (several), never both."""

        model_config = ConfigDict(extra="forbid", strict=True)

        text: text_type | None = Field(default=None, description="one abstract")
        texts: Annotated[list[text_type], Field(min_length=1, max_length=max_texts)] | None = Field(
            default=None, description=f"1 to {max_texts} abstracts"
        )

        @model_validator(mode="after")
        def one_of_text_or_texts(self) -> ExtractRequest:
            if (self.text is None) == (self.texts is None):
                raise ValueError('send either "text" or "texts", not both and not neither')
            for number, text in enumerate(self.all_texts(), start=1):
                if not text.strip():
                    where = '"text"' if self.text is not None else f'"texts" item {number}'
                    raise ValueError(f"{where} is blank")
            return self

        def all_texts(self) -> list[str]:
            return [self.text] if self.text is not None else list(self.texts or [])

    return ExtractRequest


def _where(location: tuple[Any, ...]) -> str:
    if len(location) >= 2 and location[0] == "texts" and isinstance(location[1], int):
        return f'"texts" item {location[1] + 1}'
    return f'"{location[0]}"' if location else "body"


def describe(error: ValidationError, max_texts: int, max_chars: int) -> ApiError:
    """The first problem of a failed validation, as the status and message a client gets."""
    first = error.errors(include_url=False, include_input=False)[0]
    kind, location = first["type"], tuple(first["loc"])
    if kind == "model_type":
        return ApiError(
            HTTPStatus.UNPROCESSABLE_ENTITY, 'expected a JSON object with "text" or "texts"'
        )
    if kind == "extra_forbidden":
        return ApiError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f'unknown field "{location[0]}": send either "text" or "texts"',
        )
    if kind == "string_too_long":
        return ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"{_where(location)} is too long: at most {max_chars} characters per text",
        )
    if kind == "too_long" and location == ("texts",):
        return ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"too many texts: at most {max_texts} per request"
        )
    message = first["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        return ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, message)
    return ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, f"{_where(location)}: {message}")


def check_headers(headers: Any, max_body_bytes: int) -> None:
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
    length = headers.get("content-length")
    if length is None and "chunked" not in headers.get("transfer-encoding", ""):
        raise ApiError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
    # h11 has already checked that a Content-Length is ASCII digits.
    if length is not None and int(length) > max_body_bytes:
        raise ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"body of {length} bytes; at most {max_body_bytes}",
        )


async def read_body(request: Any, max_body_bytes: int, deadline_s: float) -> bytes:
    """The whole body, within one deadline for all of it (a trickling client gets 408)."""
    from starlette.requests import ClientDisconnect

    body = bytearray()
    try:
        async with asyncio.timeout(deadline_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body_bytes:
                    raise ApiError(
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {max_body_bytes} bytes"
                    )
    except TimeoutError:
        raise ApiError(
            HTTPStatus.REQUEST_TIMEOUT, f"request body not received within {deadline_s:g} s"
        ) from None
    except ClientDisconnect:
        raise ApiError(CLIENT_CLOSED, "client closed the connection before its body") from None
    return bytes(body)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(HTTPStatus.BAD_REQUEST, "malformed JSON body: not UTF-8") from None
    except json.JSONDecodeError as error:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"malformed JSON body: {error}") from None
    except RecursionError:
        raise ApiError(HTTPStatus.BAD_REQUEST, "malformed JSON body: nested too deeply") from None


async def read_texts(request: Any, model: type[BaseModel], settings: Any) -> list[str]:
    """The texts of a POST /extract request, or an ApiError saying what is wrong with it."""
    check_headers(request.headers, settings.max_body_bytes)
    body = await read_body(request, settings.max_body_bytes, settings.read_timeout_s)
    payload = parse_json(body)
    try:
        parsed = model.model_validate(payload)
    except ValidationError as error:
        raise describe(error, settings.max_texts, settings.max_chars) from None
    except RecursionError:  # a structure nested deep enough to parse but not to validate
        raise ApiError(HTTPStatus.BAD_REQUEST, "malformed JSON body: nested too deeply") from None
    return parsed.all_texts()
