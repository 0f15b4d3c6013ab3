"""The complete contact mirror: `systeme-flow sync` reads an account whole, so "not in the mirror" means "not in
the account" (see sync.py), and the service keeps it current (upkeep.py)."""
