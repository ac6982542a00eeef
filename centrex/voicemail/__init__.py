"""Voicemail to email, per line (issue 15): docs/voicemail.md."""
