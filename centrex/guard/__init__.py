"""``centrex guard``: brute-force and scanner protection (docs/sip-bans.md)."""
