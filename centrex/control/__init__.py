"""The call-control daemon: decides every call placed through Asterisk."""
