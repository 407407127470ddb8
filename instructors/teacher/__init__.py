"""Teacher access: OpenAI-compatible client, retries, rate limits, token accounting, stub server."""
