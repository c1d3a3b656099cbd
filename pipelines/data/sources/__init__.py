"""Data sources: the built-in generated datasets and the user's own files."""
