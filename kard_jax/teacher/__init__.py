"""Teacher rationales: few-shot prompts, a resilient OpenAI-compatible client, the call journal,
filtering, offline sources (synthetic oracle, imports) and the stage that ties them together."""
