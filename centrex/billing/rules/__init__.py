"""Pure billing rules: no I/O, money in integer cents and Decimal, never floats."""
