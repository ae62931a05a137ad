"""Configuration: one settings object, built once per process."""

from config.settings import ClosePolicy, Settings, get_settings, load_settings

__all__ = ["ClosePolicy", "Settings", "get_settings", "load_settings"]
