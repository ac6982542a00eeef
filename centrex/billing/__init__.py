"""Billing from the CDRs (issue 17): catalogue, rating, and the money rules of art. 8 and 11."""
