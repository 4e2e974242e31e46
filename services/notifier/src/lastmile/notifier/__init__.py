"""Notifier: tells customers when their parcel comes, and merchants what happened to their orders."""
