"""CDS Hooks security: the EHR's JWT checked as the specification asks (issuer allowlist, audience,
expiry, jti replay)."""

from __future__ import annotations

import time
from typing import Any

import jwt

from ehr.settings import EhrSettings


# --- security -------------------------------------------------------------------------------
class JwtVerifier:
    """Verify the EHR's JWT per CDS Hooks: iss allowlist, aud = this service's URL, exp, jti replay."""

    def __init__(self, settings: EhrSettings):
        self.settings = settings
        self._clients = {iss: jwt.PyJWKClient(url, cache_keys=True, timeout=2)
                         for iss, url in settings.cds_issuers.items()}
        self._seen: dict[str, float] = {}

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise PermissionError(f"malformed JWT: {exc}") from None
        iss = unverified.get("iss")
        if iss not in self._clients:
            raise PermissionError("JWT issuer is not allowed")
        try:
            key = self._clients[iss].get_signing_key_from_jwt(token).key
            claims = jwt.decode(token, key, algorithms=["RS384", "ES384", "RS256", "ES256"], audience=audience,
                                issuer=iss, options={"require": ["iss", "aud", "exp", "jti"]})
        except jwt.PyJWTError as exc:
            raise PermissionError(f"JWT rejected: {exc}") from None
        now = time.time()
        self._seen = {j: t for j, t in self._seen.items() if now - t < self.settings.cds_jti_window_s}
        if claims["jti"] in self._seen:
            raise PermissionError("JWT replayed (jti seen before)")
        self._seen[claims["jti"]] = now
        return claims
