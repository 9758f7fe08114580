"""Upstream LLM providers: OpenAI-compatible, Anthropic, and the mock upstream."""
