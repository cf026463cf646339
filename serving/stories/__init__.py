"""The Stories tray (POST /v1/stories/tray) and seen state (POST /v1/stories/seen)."""
