"""Real engines (openai-agents Runner, the openai client) through the built-in adapters."""
