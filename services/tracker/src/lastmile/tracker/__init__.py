"""Tracker: GPS pings in, arrivals detected, live ETAs out, and the customer tracking page."""
