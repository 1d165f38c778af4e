"""The HTTP API: FastAPI app, routers, request/response schemas, auth and error mapping."""
