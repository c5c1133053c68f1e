"""Faust agents: each one owns a piece of state and reads/writes topics (see topology.py)."""
