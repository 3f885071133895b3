"""HTTP plumbing around the handlers: ASGI middleware (access log, body and JSON limits,
security headers, CORS, traffic count), metrics and the OpenAPI provider."""
