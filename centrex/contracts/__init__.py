"""The customer's contract over its life: term, renewal, notice, termination (issue 18)."""
