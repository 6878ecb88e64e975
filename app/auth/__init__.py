"""Authentication and per-repository access: htpasswd, bearer tokens, policies, the token server."""
