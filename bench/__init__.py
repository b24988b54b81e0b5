"""modelvault's benchmark harness (`python -m bench`, `make bench`, `make bench-compare`)."""
