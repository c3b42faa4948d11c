"""smoke: provision, chat with, meter and clean up an agent VPS, for real."""
