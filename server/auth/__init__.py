"""Token verification: the local development issuer and Better Auth tokens."""
