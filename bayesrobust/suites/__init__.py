"""Suites: config in, metrics + arrays out through a RunDir. Figures are drawn later by the report."""
