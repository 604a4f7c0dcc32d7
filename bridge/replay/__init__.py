"""`talon-bridge replay`: dead letters back to their topics."""
