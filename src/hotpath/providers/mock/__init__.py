"""The mock upstream: a real HTTP server speaking OpenAI's chat-completions,
embeddings and models API and Anthropic's Messages API, with deterministic
answers, exact token usage, simulated latency and injectable faults.

    with MockUpstream(MockConfig(ttft=Latency.parse("20ms"))) as mock:
        client = openai.OpenAI(base_url=mock.url, api_key="x")

See ``docs/mock-upstream.md``.
"""

from hotpath.providers.mock._app import MockApp, MockStats, RecordedRequest
from hotpath.providers.mock._config import FAULTS, Latency, MockConfig
from hotpath.providers.mock._server import MockUpstream, serve

__all__ = [
    "FAULTS",
    "Latency",
    "MockApp",
    "MockConfig",
    "MockStats",
    "MockUpstream",
    "RecordedRequest",
    "serve",
]
