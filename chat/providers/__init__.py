"""Provider registry: which models this installation offers, and the adapter for each.

Only configured providers appear: OpenAI when OPENAI_API_KEY is set, Anthropic when
ANTHROPIC_API_KEY is set, and `demo` while neither is (or as CHAT_DEMO_ENABLED says). Keys stay on
the server; the browser only ever sees "provider:model" choices.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from chat.providers.base import Provider, ProviderError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelOption:
    provider: str
    model: str

    @property
    def value(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def sees_images(self) -> bool:
        """Whether the model takes images: the demo does; a real model when CHAT_VISION_MODELS
        names it ("provider:model", shell-style wildcards allowed)."""
        if self.provider == "demo":
            return True
        return any(
            fnmatch.fnmatchcase(self.value, pattern.strip())
            for pattern in settings.CHAT_VISION_MODELS
            if pattern.strip()
        )

    @property
    def label(self) -> str:
        if self.provider == "demo":
            return "Demo (offline)"
        return f"{self.model} · {provider_display_name(self.provider)}"


def provider_display_name(provider: str) -> str:
    """What the picker calls a provider: OPENAI_PROVIDER_NAME / ANTHROPIC_PROVIDER_NAME, so a
    self-hosted server reads "llama3.2 · Ollama" rather than "llama3.2 · openai"."""
    names = {
        "demo": "Demo",
        "openai": settings.OPENAI_PROVIDER_NAME,
        "anthropic": settings.ANTHROPIC_PROVIDER_NAME,
    }
    return names.get(provider) or provider


def real_provider_configured() -> bool:
    return bool(settings.OPENAI_API_KEY or settings.ANTHROPIC_API_KEY)


def demo_enabled() -> bool:
    """CHAT_DEMO_ENABLED when set; unset, the demo is offered only while no real provider is
    configured (beside real models it only confuses, and it is not what a key was set for)."""
    if settings.CHAT_DEMO_ENABLED is not None:
        return bool(settings.CHAT_DEMO_ENABLED)
    return not real_provider_configured()


def available_models() -> list[ModelOption]:
    options: list[ModelOption] = []
    if demo_enabled():
        options.append(ModelOption("demo", "demo"))
    if settings.OPENAI_API_KEY:
        options += [ModelOption("openai", name) for name in settings.OPENAI_MODELS if name]
    if settings.ANTHROPIC_API_KEY:
        options += [ModelOption("anthropic", name) for name in settings.ANTHROPIC_MODELS if name]
    return options


def default_model() -> ModelOption | None:
    """CHAT_DEFAULT_MODEL when it is offered; else the first real model (someone who set a key
    wants to use it), and the offline demo only when it is all there is."""
    options = available_models()
    if settings.CHAT_DEFAULT_MODEL:
        chosen = resolve_model(settings.CHAT_DEFAULT_MODEL)
        if chosen:
            return chosen
    real = [option for option in options if option.provider != "demo"]
    return next(iter(real or options), None)


def resolve_model(value: str) -> ModelOption | None:
    """The offered model named by a "provider:model" choice, or None if it is not offered."""
    return next((option for option in available_models() if option.value == value), None)


def get_provider(name: str) -> Provider:
    if name == "demo":
        from chat.providers.demo import DemoProvider

        return DemoProvider(tokens_per_second=settings.CHAT_DEMO_TOKENS_PER_SECOND)
    if name == "openai":
        if not settings.OPENAI_API_KEY:
            # A chat started before the key was removed. The setting is for the log only.
            logger.error(
                "A reply asked for OpenAI, which is not configured: OPENAI_API_KEY is unset."
            )
            raise ProviderError("OpenAI is no longer available here. Pick another model.")
        return _openai_provider(settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL)
    if name == "anthropic":
        if not settings.ANTHROPIC_API_KEY:
            # A chat started before the key was removed. The setting is for the log only.
            logger.error(
                "A reply asked for Anthropic, which is not configured: ANTHROPIC_API_KEY is unset."
            )
            raise ProviderError("Anthropic is no longer available here. Pick another model.")
        return _anthropic_provider(settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL)
    raise ProviderError(f"Unknown provider {name!r}.")


# One SDK client per configuration and event loop, so its HTTP connection pool is reused across
# replies; pooled connections belong to the loop that opened them, hence the per-loop key.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], Provider]] = (
    weakref.WeakKeyDictionary()
)


def _loop_cached(key: tuple[str, ...], build: Callable[[], Provider]) -> Provider:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return build()
    per_loop = _clients.setdefault(loop, {})
    if key not in per_loop:
        per_loop[key] = build()
    return per_loop[key]


def _openai_provider(api_key: str, base_url: str) -> Provider:
    from chat.providers.openai import OpenAIProvider

    return _loop_cached(
        ("openai", api_key, base_url),
        lambda: OpenAIProvider(
            api_key=api_key,
            base_url=base_url or None,
            max_retries=settings.CHAT_PROVIDER_MAX_RETRIES,
        ),
    )


def _anthropic_provider(api_key: str, base_url: str) -> Provider:
    from chat.providers.anthropic import AnthropicProvider

    return _loop_cached(
        ("anthropic", api_key, base_url),
        lambda: AnthropicProvider(
            api_key=api_key,
            base_url=base_url or None,
            max_retries=settings.CHAT_PROVIDER_MAX_RETRIES,
        ),
    )
