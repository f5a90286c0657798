"""The cell."""
