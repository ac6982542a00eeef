"""Number portability (issue 16): port-in with RIO checks, the donor operator's side, activation
at the porting slot, and the RIOs of the platform's own numbers."""
