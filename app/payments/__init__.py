"""Payments: which stored events are payments and refunds, and whether each buyer got what they paid for."""
