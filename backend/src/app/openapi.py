"""The OpenAPI document, with what quart-schema cannot say by itself: bodiless responses.

quart-schema documents a response through a model; a 204 has no body, so routes mark it with
`documents_no_content` and this provider writes it without any content.
"""

from __future__ import annotations

from typing import Any

from quart_schema import OpenAPIProvider
from quart_schema.typing import Model

from app.schemas import NoContent


class Provider(OpenAPIProvider):
    def build_response_object(
        self, model: type[Model], headers_model: type[Model] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is NoContent:
            return {"description": "No Content"}, {}
        return super().build_response_object(model, headers_model)
