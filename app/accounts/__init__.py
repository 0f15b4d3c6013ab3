"""Systeme.io accounts: the registry (name -> client, quota, name cache) and holds with their probes."""
