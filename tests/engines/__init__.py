"""Real engines (openai-agents Runner, the openai client) through the built-in adapters."""

# Import the core before `instrument.adapters`: importing `instrument.adapters` first can hit the
# adapters <-> instrument.decorator import cycle while the core is being reshaped.
import instrument  # noqa: F401
