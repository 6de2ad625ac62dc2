"""Personalization: users' feedback events and the profile stores that keep them."""
