"""Command line: argument parsing and console output only (the work lives in the library)."""
