"""The AI assistant: LLM client, conversations, the agent and its tools, prompts."""
