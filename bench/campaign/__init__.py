"""The load campaign's parts (`bench/load.py` runs it)."""
