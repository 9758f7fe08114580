"""hotpath: make LLM agents fast and cheap."""
