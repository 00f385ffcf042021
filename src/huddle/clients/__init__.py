"""Clients: who a workspace's projects are for."""
