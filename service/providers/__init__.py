"""The outside world the operations call: image providers behind one protocol (Gemini,
OpenAI, the offline `local` one) and their fallback chain, the one retry policy, YouTube,
and safe fetching of user-given image URLs."""

from ._failures import error_from_response, error_from_transport
from ._fetch import IMAGE_TYPES, MAX_IMAGE_BYTES, FetchedImage, ImageFetcher
from ._gemini import GeminiProvider
from ._models import IMAGE_MODELS, ImageModel, image_model
from ._openai import OpenAIProvider
from ._protocol import EditRequest, GeneratedImage, ImageProvider, ImageRequest, ProviderChain
from ._public_urls import check_public_urls, is_public_address
from ._retry import RetryPolicy
from ._youtube import YouTube, video_id_of, watch_url
from .local import LocalProvider

__all__ = [
    "IMAGE_MODELS",
    "IMAGE_TYPES",
    "MAX_IMAGE_BYTES",
    "EditRequest",
    "FetchedImage",
    "GeminiProvider",
    "GeneratedImage",
    "ImageFetcher",
    "ImageModel",
    "ImageProvider",
    "ImageRequest",
    "LocalProvider",
    "OpenAIProvider",
    "ProviderChain",
    "RetryPolicy",
    "YouTube",
    "check_public_urls",
    "error_from_response",
    "error_from_transport",
    "image_model",
    "is_public_address",
    "video_id_of",
    "watch_url",
]
