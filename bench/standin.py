"""A stand-in for Gemini's `generateContent` under load: real PNGs after 1–4 s, with a
fraction of 503s and of 429s that carry `google.rpc.RetryInfo`.

    python bench/standin.py --port P --log calls.jsonl [--fail-503 0.05] [--fail-429 0.05]

Each call is appended to the log as one JSON line, so a campaign can count afterwards
what every operation cost the provider:
  {"t": wall time, "key": x-goog-api-key, "kind": "generate"|"edit"|"heatmap"|"other",
   "nonce": word after "#" in the prompt, "variation": n, "image": sha256 of the attached
   image, "outcome": "image"|"503"|"429"|"cut"}
"cut": the caller had gone when the answer was ready (its process was killed, say).
The key tells which service process made the call: the campaign gives each process (and
each restart of it) its own key.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import uvicorn
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

#: Pixel sizes of Gemini's 1K images, by aspect ratio (larger requests get these too:
#: the service keeps what the provider sends).
SIZES = {"16:9": (1376, 768), "9:16": (768, 1376), "1:1": (1024, 1024), "4:3": (1184, 864),
         "3:4": (864, 1184), "3:2": (1248, 832), "2:3": (832, 1248), "4:5": (928, 1152),
         "5:4": (1152, 928), "21:9": (1584, 672)}
POOL = 24  # distinct images per aspect ratio (distinct bytes: heatmaps are cached by hash)
NONCE = re.compile(r"#([A-Za-z0-9_-]+)")
VARIATION = re.compile(r"Variation (\d+)")


def _images(size: tuple[int, int], count: int, seed: int) -> list[bytes]:
    """`count` distinct, compressible PNGs of `size`: a gradient with a few shapes."""
    rng = random.Random(seed)
    width, height = size
    base = Image.linear_gradient("L").resize(size).convert("RGB")
    images = []
    for _ in range(count):
        image = base.copy()
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.randrange(width), rng.randrange(height)
            r = rng.randrange(40, height // 3)
            colour = tuple(rng.randrange(256) for _ in range(3))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        out = io.BytesIO()
        image.save(out, "PNG", compress_level=1)
        images.append(out.getvalue())
    return images


class StandIn:
    def __init__(self, log: Path, fail_503: float, fail_429: float, delay: tuple[float, float],
                 seed: int) -> None:
        self.log = log.open("a", buffering=1)
        self.fail_503, self.fail_429 = fail_503, fail_429
        self.delay = delay
        self.rng = random.Random(seed)
        self.pool = {ratio: _images(size, POOL, seed + n)
                     for n, (ratio, size) in enumerate(SIZES.items())}

    def _record(self, request: Request, body: dict[str, Any], outcome: str) -> None:
        parts = body.get("contents", [{}])[0].get("parts", [])
        text = " ".join(p.get("text", "") for p in parts if isinstance(p, dict))
        inline = [p["inlineData"]["data"] for p in parts if isinstance(p, dict)
                  and isinstance(p.get("inlineData"), dict)]
        kind = ("edit" if text.startswith("Edit the attached") else
                "heatmap" if "attention heatmap" in text else
                "generate" if text.startswith("Design a") else "other")
        nonce, variation = NONCE.search(text), VARIATION.search(text)
        entry = {
            "t": time.time(), "key": request.headers.get("x-goog-api-key"), "kind": kind,
            "nonce": nonce.group(1) if nonce else None,
            "variation": int(variation.group(1)) if variation else None,
            "image": (hashlib.sha256(base64.b64decode(inline[0])).hexdigest()
                      if inline else None),
            "outcome": outcome,
        }
        self.log.write(json.dumps(entry) + "\n")

    async def generate(self, request: Request) -> JSONResponse:
        body = await request.json()
        await asyncio.sleep(self.rng.uniform(*self.delay))
        draw = self.rng.random()
        if draw < self.fail_503:
            self._record(request, body, "503")
            return JSONResponse({"error": {"code": 503, "status": "UNAVAILABLE",
                                           "message": "The model is overloaded."}}, 503)
        if draw < self.fail_503 + self.fail_429:
            self._record(request, body, "429")
            delay = f"{self.rng.randint(1, 3)}s"
            return JSONResponse({"error": {
                "code": 429, "status": "RESOURCE_EXHAUSTED",
                "message": "Resource has been exhausted (e.g. check quota). For more "
                           "information, see your plan and billing details.",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                             "retryDelay": delay}],
            }}, 429)
        if await request.is_disconnected():
            self._record(request, body, "cut")
            return JSONResponse({}, 499)
        ratio = body.get("generationConfig", {}).get("imageConfig", {}).get("aspectRatio")
        png = self.rng.choice(self.pool.get(ratio, self.pool["16:9"]))
        self._record(request, body, "image")
        return JSONResponse({"candidates": [{
            "content": {"role": "model", "parts": [
                {"inlineData": {"mimeType": "image/png",
                                "data": base64.b64encode(png).decode()}}]},
            "finishReason": "STOP",
        }]})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1beta/models/{model}:generateContent", self.generate, methods=["POST"]),
        ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--fail-503", type=float, default=0.05)
    parser.add_argument("--fail-429", type=float, default=0.05)
    parser.add_argument("--delay", default="1,4", help="seconds before answering: min,max")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    low, high = (float(x) for x in args.delay.split(","))
    stand_in = StandIn(args.log, args.fail_503, args.fail_429, (low, high), args.seed)
    uvicorn.run(stand_in.app(), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
