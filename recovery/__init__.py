"""State recovery: reboot and lease-loss reclaim; migration next (RFC 8881 s. 8.4, 11)."""
