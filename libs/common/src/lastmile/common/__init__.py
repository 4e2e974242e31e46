"""Lastmile's shared mechanics, written once and used by every service."""
