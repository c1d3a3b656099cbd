"""Data: where samples come from (sources), reading and checking a dataset, and the splits."""
