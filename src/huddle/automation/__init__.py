"""Automation rules of a project: *when* a task event matches, *then* actions."""
