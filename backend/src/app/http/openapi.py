"""The OpenAPI document, with what quart-schema cannot say by itself.

- Bodiless responses: quart-schema documents a response through a model; a 204 has no body,
  so routes mark it with `documents_no_content` and this provider writes it without content.
- Required bodies: every body this API reads is required (without one the request is a 422),
  but quart-schema leaves `requestBody` optional, which tells clients and fuzzers otherwise.
  The exceptions say so on their model (`BODY_OPTIONAL`, see app.api.validation.json_body).
- Malformed and oversized bodies: any operation that reads a body answers 400 to one that is
  not JSON (or not UTF-8) and 413 to one larger than MAX_BODY_BYTES, whatever the route.
- Event streams: a `text/event-stream` response has no JSON model; routes mark it with
  `EventStream`.
- UUID path parameters: quart-schema documents `<uuid:...>` as any string; any other string
  matches no route and is a 404, so the document says `format: uuid`.
"""

from __future__ import annotations

from typing import Any

from quart_schema import OpenAPIProvider
from quart_schema.typing import Model
from quart_schema.validation import DataSource
from werkzeug.routing import BaseConverter, Rule, UUIDConverter

from app.schemas import ErrorOut, EventStream, NoContent

BODY_ERRORS = (400, 413)


class Provider(OpenAPIProvider):
    def build_response_object(
        self, model: type[Model], headers_model: type[Model] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is NoContent:
            return {"description": "No Content"}, {}
        if model is EventStream:
            return {
                "description": "Server-sent events: `event: change` with a change of the feed "
                "as `data:` and the token after it as `id:`; `event: end` with `{detail}` when "
                "the stream ends; a comment every 15 s",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }, {}
        return super().build_response_object(model, headers_model)

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        for operations in paths.values():
            for operation in operations.values():
                if "requestBody" not in operation:
                    continue
                error, error_components = self.build_response_object(ErrorOut, None)
                components.update(error_components)
                # The operations of a rule share one `responses` dict: copy before adding.
                operation["responses"] = {
                    **dict.fromkeys(BODY_ERRORS, error),
                    **operation["responses"],
                }
        return paths, components

    def build_request_body(
        self, model: type[Model], source: DataSource
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        request_body, components = super().build_request_body(model, source)
        required = not getattr(model, "BODY_OPTIONAL", False)
        return {**request_body, "required": required}, components

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if isinstance(converter, UUIDConverter):
            parameter["schema"] = {"type": "string", "format": "uuid"}
        return parameter
