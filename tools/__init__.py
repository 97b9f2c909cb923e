"""Example tools for the example agents, importable from the project root as `tools.bank:NAME`."""
