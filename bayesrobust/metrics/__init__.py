"""Metrics on predictions and scores; one concept per module."""
