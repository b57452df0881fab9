"""Policy between the servicers and the providers: rate limits and cost budgets (reserve -> settle)."""
