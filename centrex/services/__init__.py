"""Use cases: the database and Asterisk adapters put together around the pure core."""
