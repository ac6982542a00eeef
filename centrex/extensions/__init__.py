"""Short extensions inside a customer: rules, storage and assignment (issue 15)."""
