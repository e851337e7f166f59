"""The management API: REST under /api/network/, /metrics, WebSocket events at /network.

See docs/api.md and docs/openapi.json.
"""

from ._clients import (
    CLIENTS_FILE,
    ClientKey,
    ClientKeyError,
    add_client_key,
    authorized_client_keys,
    load_client_keys,
    new_client_key,
    remove_client_key,
)
from ._events import EventsFactory, EventsProtocol, EventsResource
from ._onion import (
    API_ONION_KEY_FILE,
    ApiOnionService,
    OnionPublisher,
    api_onion_address,
    load_or_create_api_onion_key,
)
from ._openapi import DOCUMENT, openapi_json
from ._service import (
    ApiService,
    build_root,
    build_site,
    limited_request_factory,
    make_api_service,
)
from ._token import (
    TokenChecker,
    TokenFileError,
    load_or_create_token,
    read_token,
    rotate_token,
)
from ._web import ApiError, ApiResource, Authorizer

__all__ = [
    "API_ONION_KEY_FILE",
    "CLIENTS_FILE",
    "DOCUMENT",
    "ApiError",
    "ApiOnionService",
    "ApiResource",
    "ApiService",
    "Authorizer",
    "ClientKey",
    "ClientKeyError",
    "EventsFactory",
    "EventsProtocol",
    "EventsResource",
    "OnionPublisher",
    "TokenChecker",
    "TokenFileError",
    "add_client_key",
    "api_onion_address",
    "authorized_client_keys",
    "build_root",
    "build_site",
    "limited_request_factory",
    "load_client_keys",
    "load_or_create_api_onion_key",
    "load_or_create_token",
    "make_api_service",
    "new_client_key",
    "openapi_json",
    "read_token",
    "remove_client_key",
    "rotate_token",
]
