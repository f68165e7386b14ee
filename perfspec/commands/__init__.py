"""CLI subcommands, one module per layer."""
