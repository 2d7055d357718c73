"""Offline metrics and the HTML report."""
