"""The LLM providers behind one interface: local rules, OpenAI-family, Anthropic."""
