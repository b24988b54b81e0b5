"""Automatic capture of code and environment."""
