"""The HTTP edge: routes, request and response bodies, authentication, negotiation of
streams and JSON, the body limit, the one exception-handler table, /openapi.json."""

from ._auth import Authenticator, Principal, load_secret
from ._body_limit import BodyLimit
from ._handlers import EXCEPTION_HANDLERS, AnswerErrors, describe
from ._jwks import KeySet
from ._openapi import document
from ._routing import routes
from ._security_headers import SecurityHeaders, content_security_policy
from ._services import Services
from ._snapshots import Snapshots, public_output

__all__ = [
    "EXCEPTION_HANDLERS",
    "AnswerErrors",
    "Authenticator",
    "BodyLimit",
    "KeySet",
    "Principal",
    "SecurityHeaders",
    "Services",
    "Snapshots",
    "content_security_policy",
    "describe",
    "document",
    "load_secret",
    "public_output",
    "routes",
]
