"""The SQLAdmin panel at /admin: every model, read-only, secrets never shown; actions
go through the same services as the API. Only active superusers may sign in."""

from huddle.admin_panel.panel import mount_admin_panel

__all__ = ["mount_admin_panel"]
