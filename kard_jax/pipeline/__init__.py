"""Stages that chain the library into the KARD pipeline, and the command line."""
