"""Subcommands of the pylm CLI."""
