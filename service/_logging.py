"""Log set-up: one line per operation and per step; JSON lines when LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
import sys
from typing import Final

#: `extra=` fields that are part of a line when present.
FIELDS: Final = (
    "operation_id", "user_id", "kind", "step", "duration_ms", "outcome", "provider",
    "context", "code", "status", "retryable",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(
            f"{name}={record.__dict__[name]}" for name in FIELDS if name in record.__dict__
        )
        return f"{base} {extras}" if extras else base


def configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("service", "checkpoints", "ratelimit"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
