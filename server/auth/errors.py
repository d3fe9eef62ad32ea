"""The exception for a rejected bearer token."""


class TokenRejected(Exception):
    """A bearer token failed a check; the message names the check and never contains the token.

    ``status`` is the HTTP status for the rejection: 401 for a bad token, 403 for a valid token
    that lacks a scope.
    """

    def __init__(self, reason: str, *, status: int = 401, error: str = "invalid_token") -> None:
        self.reason = reason
        self.status = status
        self.error = error
        super().__init__(reason)
