"""Who calls the API and what they may do: tokens, scopes, the principal of a request."""
